"""test_resources.py -- what one client, or the process's own limits, may
cost the gateway: memory for answers a client does not take, descriptors,
signals at start; the log line of an answer a client never takes; how
long a client that reads slowly, or not at all, is kept; and JSON bodies
that would cost far more memory parsed than their size.

    python3 test_resources.py GROUP LLMROUTE FAKE_UPSTREAM

Each group starts its own processes; every wait is bounded.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwtest  # noqa
from gwtest import HOST, Fake, Gateway, check, finish, wait_for, workdir  # noqa

MOCK = {"name": "m", "backend": "mock", "mock": {"chunks": 3}}


class Sender(threading.Thread):
    """Sends data again and again on s, never reading, until `total` bytes
    went out, the socket fails, or stop is set; `sent` counts, `error` says
    how it ended when it failed."""

    def __init__(self, s, data, total):
        super().__init__(daemon=True)
        self.s, self.data, self.total = s, data, total
        self.sent, self.error, self.last_progress = 0, None, time.monotonic()
        self.stop = False

    def run(self):
        self.s.settimeout(0.2)
        while self.sent < self.total and not self.stop:
            try:
                self.sent += self.s.send(self.data)
                self.last_progress = time.monotonic()
            except socket.timeout:
                continue
            except OSError as e:
                self.error = e
                return


def pipeline(gw_bin, fake_bin):
    wd = workdir()
    # Under AddressSanitizer freed memory stays resident in its quarantine
    # (256 MB by default): kept small, RSS measures what is held.
    asan = os.environ.get("ASAN_OPTIONS", "")
    gw = Gateway(gw_bin, wd, {"models": [MOCK],
                              "server": {"log_requests": False, "idle_timeout_ms": 1500}},
                 env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=4"})

    def a_client_that_pipelines_and_never_reads_is_bounded_and_timed_out():
        # 40 MB of pipelined GET /v1/models, about a million requests: read
        # and answered into memory, their answers took gigabytes, and the
        # connection, busy, never met its timeout.
        before = gw.rss_kb()
        # A small receive buffer set before connecting: its window scale is
        # then small too, and the client's kernel takes few answers for it.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, gw.port))
        snd = Sender(s, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n" * 1000, 40 << 20)
        snd.start()
        try:
            # The gateway stops reading: sending stalls well short of it all.
            wait_for(lambda: snd.error or snd.sent >= snd.total
                     or time.monotonic() - snd.last_progress > 1.0, 60,
                     "sending to stall or end")
            # What it took is what the socket buffers and its input buffer
            # hold: a few MB.
            grown = gw.rss_kb() - before
            assert snd.sent < snd.total // 2, "the gateway read %d bytes" % snd.sent
            assert grown < 32 << 10, "RSS grew by %d kB" % grown
            # ... and closes the connection after idle_timeout_ms without a read.
            snd.join(30)
            assert not snd.is_alive(), "the connection is still open after 30 s"
            assert isinstance(snd.error, (ConnectionResetError, BrokenPipeError)), snd.error
            wait_for(lambda: gw.metrics()["llmroute_connections_open"] == 1, 5,
                     "the connection to close")
        finally:
            snd.stop = True
            s.close()
    check("a client that pipelines requests and reads no answer holds a bounded backlog "
          "and is closed at idle_timeout_ms", a_client_that_pipelines_and_never_reads_is_bounded_and_timed_out)

    def a_pipelining_client_that_reads_gets_every_answer():
        n = 3000
        s = socket.create_connection((HOST, gw.port), timeout=10)
        data = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * n
        t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
        t.start()
        mark = b"HTTP/1.1 200"
        got, tail = 0, b""
        while got < n:
            b = s.recv(1 << 16)
            assert b, "closed after %d answers" % got
            # A mark split between two reads is counted once: the tail kept
            # is one byte too short to hold a whole one.
            got += (tail + b).count(mark)
            tail = (tail + b)[-(len(mark) - 1):]
        t.join(10)
        s.close()
        assert got == n, got
    check("a pipelining client that reads gets every answer, in turn",
          a_pipelining_client_that_reads_gets_every_answer)

    def a_pipelining_client_that_half_closes_gets_every_answer():
        # Requests for about 8 MB of answers (GET /metrics), more than the
        # sockets hold, then the client shuts down its sending side, and
        # reads only a second later. Reading the requests waits while their
        # answers pile up, so the gateway met the end of its input with
        # answers still to write: they were dropped with the connection.
        st, _, one = gwtest.request(gw.port, "GET", "/metrics")
        assert st == 200, st
        n = max(50, (8 << 20) // len(one))
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, gw.port))
        s.settimeout(10)

        def send():
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * n)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        time.sleep(1.0)
        mark = b"HTTP/1.1 200"
        got, tail = 0, b""
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got += (tail + b).count(mark)
            tail = (tail + b)[-(len(mark) - 1):]
        t.join(10)
        s.close()
        assert got == n, "%d answers of %d" % (got, n)
    check("a pipelining client that half-closes after its requests gets every answer, then "
          "the connection closes", a_pipelining_client_that_half_closes_gets_every_answer)

    def an_idle_connection_is_closed_after_idle_timeout_ms():
        # Counted from its last answer (idle_timeout_ms 1.5 s). The kernel's
        # acknowledgement of that answer, seen at the first timeout, was taken
        # for the client reading: the connection stayed for twice as long.
        # Timed from before the request, so that the time counted is never
        # less than the gateway's (the answer's arrival, on a loaded machine,
        # may be seen late): at least idle_timeout_ms, and under the 3 s the
        # defect kept it.
        for path in ("/health", "/v1/models"):
            s = socket.create_connection((HOST, gw.port), timeout=10)
            t0 = time.monotonic()
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(1 << 16)
            while s.recv(1 << 16):
                pass
            took = time.monotonic() - t0
            s.close()
            assert 1.45 < took < 2.9, "closed %.2f s after the request" % took
    check("an idle keep-alive connection is closed idle_timeout_ms after its last answer",
          an_idle_connection_is_closed_after_idle_timeout_ms)


def listening(pid):
    """Whether process pid has a listening TCP socket (by its descriptors'
    inodes in /proc/net/tcp and tcp6)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    return True
    return False


def signals(gw_bin, fake_bin):
    wd = workdir()
    cfg = os.path.join(wd, "gw.json")
    with open(cfg, "w") as f:
        json.dump({"models": [MOCK]}, f)

    def started_held_at_its_port_file(name):
        """A gateway started with its --port-file's temporary file a FIFO:
        it listens, then blocks opening the file until the test reads it. A
        signal sent then arrives right after it listens and before the port
        file exists, every time."""
        port_file = os.path.join(wd, name + ".port")
        os.mkfifo(port_file + ".tmp")
        err = os.path.join(wd, name + ".err")
        p = subprocess.Popen([gw_bin, "serve", "--config", cfg, "--listen", HOST + ":0",
                              "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        gwtest._procs.append(p)
        wait_for(lambda: p.poll() is not None or listening(p.pid), 30, "the gateway to listen")
        assert p.poll() is None, open(err).read()
        return p, port_file, err

    def release(p, port_file):
        """Read the port the gateway writes into the FIFO."""
        fd = os.open(port_file + ".tmp", os.O_RDONLY)
        data = b""
        while True:
            b = os.read(fd, 64)
            if not b:
                break
            data += b
        os.close(fd)
        return int(data)

    def a_sighup_as_it_starts_to_listen_reloads():
        # Until the signal handlers were added after the port file was
        # written, SIGHUP's default action killed a gateway that had just
        # started listening.
        p, port_file, err = started_held_at_its_port_file("hup")
        p.send_signal(signal.SIGHUP)
        time.sleep(0.2)
        assert p.poll() is None, "killed by SIGHUP: %s" % p.returncode
        port = release(p, port_file)
        wait_for(lambda: "reloaded" in open(err).read(), 10, "the reload to be logged")
        st, _, _ = gwtest.request(port, "GET", "/health")
        assert st == 200, st
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0, p.returncode
    check("a SIGHUP that arrives as the gateway starts to listen is a reload",
          a_sighup_as_it_starts_to_listen_reloads)

    def a_sigterm_as_it_starts_to_listen_stops_it_cleanly():
        for sig in (signal.SIGTERM, signal.SIGINT):
            p, port_file, err = started_held_at_its_port_file("term%d" % sig)
            p.send_signal(sig)
            time.sleep(0.2)
            assert p.poll() is None, "killed by signal %d: %s" % (sig, p.returncode)
            release(p, port_file)
            assert p.wait(15) == 0, (sig, p.returncode, open(err).read())
    check("a SIGTERM or SIGINT that arrives as the gateway starts to listen stops it, exit 0",
          a_sigterm_as_it_starts_to_listen_stops_it_cleanly)


def stats(fake):
    """Requests the fake upstream has served."""
    st, _, body = gwtest.request(fake.port, "GET", "/_stats")
    assert st == 200, st
    return json.loads(body)["requests"]


def exchange(s, method, path, body=""):
    """One request on socket s, its answer read whole (Content-Length):
    (status, headers lowercased, body bytes)."""
    data = body.encode()
    s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(), len(data),
                                                   data))
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        assert b, "closed before an answer"
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    h = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        h[k.strip().lower()] = v.strip()
    n = int(h.get("content-length", 0))
    while len(rest) < n:
        b = s.recv(65536)
        assert b, "closed mid-body"
        rest += b
    return int(lines[0].split()[1]), h, rest[:n]


def descriptors(gw_bin, fake_bin):
    wd = workdir()
    fakes = [Fake(fake_bin, wd, name="fake%d" % i) for i in range(3)]
    models = [{"name": "m%d" % i, "backend": "openai", "base_url": f.base_url}
              for i, f in enumerate(fakes)]

    def idle_connections_of_several_hosts_stay_within_the_cap(client):
        # As many clients as the cap, each asking the three models in turn,
        # all at once (each answer takes 300 ms). Every host's pool kept up
        # to cap idle connections (the gateway's own client: 256 a host;
        # libcurl: 1024 in all), and the third host's connects ran out of
        # descriptors (502, "Too many open files"), then its breaker opened
        # (503 circuit_open) on a healthy model.
        for f in fakes:
            f.scenario("delay_ms=300")
        gw = Gateway(gw_bin, wd, {"models": models, "server": {"log_requests": False}},
                     name="fds-" + client, nofile=(96, 96),
                     env={"LLMROUTE_UPSTREAM_CLIENT": client})
        n = int(gw.metrics()["llmroute_connections_max"])
        bar = threading.Barrier(n)
        statuses, lock = [], threading.Lock()

        def one_client():
            c = http.client.HTTPConnection(HOST, gw.port, timeout=60)
            try:
                for rnd in range(2):
                    for k in range(3):
                        body = json.dumps({"model": "m%d" % k,
                                           "messages": [{"role": "user", "content": "hi"}]})
                        bar.wait(60)
                        c.request("POST", "/v1/chat/completions", body,
                                  {"Content-Type": "application/json"})
                        r = c.getresponse()
                        r.read()
                        with lock:
                            statuses.append(r.status)
            finally:
                c.close()
        ts = [threading.Thread(target=one_client, daemon=True) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        bad = [s for s in statuses if s != 200]
        assert len(statuses) == 6 * n and not bad, (len(statuses), bad[:5])
    def out_of_descriptors_is_the_gateways_failure(client):
        # A cap the descriptor limit cannot fit (kept, with a warning), and
        # idle clients holding every descriptor: the upstream connection of a
        # request already accepted cannot be opened. That is the gateway's
        # limit, not the model's: it was classed connect_refused, counted
        # against the model's breaker, and the request fell back to the next
        # candidate, which failed the same way (502 upstream_unreachable).
        gw = Gateway(gw_bin, wd, {"models": models,
                                  "routes": [{"name": "r", "strategy": "sequential",
                                              "models": ["m0"], "fallbacks": ["m1"]}],
                                  "server": {"max_connections": 200}},
                     name="emfile-" + client, nofile=(64, 64),
                     env={"LLMROUTE_UPSTREAM_CLIENT": client})
        for f in fakes:
            f.scenario("ok")
        before = [stats(f) for f in fakes]
        a = socket.create_connection((HOST, gw.port), timeout=10)
        idle = []
        try:
            assert exchange(a, "GET", "/health")[0] == 200
            idle = [socket.create_connection((HOST, gw.port), timeout=10) for _ in range(70)]
            wait_for(lambda: [e for e in gw.events("accept_paused")
                              if "cannot accept" in e["message"]], 10,
                     "accepting to pause for want of descriptors")
            body = json.dumps({"model": "r", "messages": [{"role": "user", "content": "hi"}]})
            st, h, resp = exchange(a, "POST", "/v1/chat/completions", body)
            err = json.loads(resp)["error"]
            assert st == 503 and err["code"] == "descriptors_exhausted", (st, resp)
            assert "file descriptors" in err["message"], err
            assert h.get("x-llmroute-attempts") == "1" and h.get("retry-after") == "1", h
            assert [stats(f) for f in fakes] == before, "an upstream was asked"
            st, _, text = exchange(a, "GET", "/metrics")
            m = gwtest.parse_metrics(text.decode())
            assert m['llmroute_upstream_attempts_total{model="m0",class="descriptors"}'] == 1, m
            assert 'llmroute_upstream_attempts_total{model="m1",class="descriptors"}' not in m
            assert m['llmroute_breaker_state{model="m0"}'] == 0
            line = [l for l in gw.log_lines() if l.get("route") == "r"][-1]
            assert line["status"] == 503 and line["tries"][0]["class"] == "descriptors", line
        finally:
            for s in idle:
                s.close()
            a.close()
    def one_pause_line_for_a_descriptor_shortage():
        # Under a lasting shortage each client that leaves lets one waiting
        # client in, and the next accept() fails again. Every accept ended
        # the pause, so each failure after it was logged and counted as a new
        # one: a line per client, where the README promises one.
        gw = Gateway(gw_bin, wd, {"models": models, "server": {"max_connections": 200}},
                     name="pauses", nofile=(64, 64))
        a = socket.create_connection((HOST, gw.port), timeout=10)
        clients = []
        try:
            assert exchange(a, "GET", "/health")[0] == 200
            clients = [socket.create_connection((HOST, gw.port), timeout=10)
                       for _ in range(80)]

            def pauses():
                return [e for e in gw.events("accept_paused")
                        if "cannot accept" in e["message"]]
            wait_for(pauses, 10, "accepting to pause for want of descriptors")
            # The first clients were accepted: each one closed frees a
            # descriptor, which the next waiting client takes.
            for s in clients[:15]:
                s.close()
                time.sleep(0.05)
            clients = clients[15:]
            assert exchange(a, "GET", "/health")[0] == 200
            st, _, text = exchange(a, "GET", "/metrics")
            m = gwtest.parse_metrics(text.decode())
            assert len(pauses()) == 1, pauses()
            assert m['llmroute_accept_paused_total{reason="descriptors"}'] == 1, m
        finally:
            for s in clients:
                s.close()
            a.close()
    check("a lasting shortage of descriptors is one accept_paused line, not one per client",
          one_pause_line_for_a_descriptor_shortage)

    for client in ("h1", "curl"):
        check("the gateway out of descriptors for an upstream connection (%s): 503 "
              "descriptors_exhausted, no fallback, the breaker untouched" % client,
              out_of_descriptors_is_the_gateways_failure, client)

    for client in ("h1", "curl"):
        check("idle upstream connections to several hosts stay within the connection cap "
              "(%s): no request fails for want of a descriptor" % client,
              idle_connections_of_several_hosts_stay_within_the_cap, client)


class BigAnswers(gwtest.Upstream):
    """An upstream on 127.0.0.1 that answers every chat request with a
    chat.completion of `size` bytes of content (Content-Length)."""

    def __init__(self, size):
        content = "a" * size
        self.body = json.dumps({
            "id": "big", "object": "chat.completion", "model": "big",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        super().__init__()
        self.start()

    def serve(self, c):
        try:
            gwtest.read_request(c)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.body)
                      + self.body)
        except OSError:
            pass
        finally:
            c.close()


def big_gateway(gw_bin, wd, size):
    """A gateway (idle_timeout_ms 1000) whose model "big" answers size
    bytes: the upstream, the gateway, a request body for it, and a function
    giving the gateway's log lines of its answers."""
    up = BigAnswers(size)
    gw = Gateway(gw_bin, wd, {"models": [{"name": "big", "backend": "openai",
                                          "base_url": up.base_url}],
                              "server": {"idle_timeout_ms": 1000}})
    body = json.dumps({"model": "big", "messages": [{"role": "user", "content": "hi"}]})

    def lines():
        return [l for l in gw.log_lines() if l.get("model") == "big" and "status" in l]
    return up, gw, body, lines


def answers(gw_bin, fake_bin):
    wd = workdir()
    up, gw, body, lines = big_gateway(gw_bin, wd, 20 << 20)

    def an_answer_the_client_never_takes_is_logged_499():
        # 20 MB the client never reads: it cannot all be written, and the
        # connection ends at the write timeout. The line said 200 as soon as
        # the answer was queued, though the client never had it.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, gw.port))
        try:
            data = body.encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(data), data))
            line = wait_for(lines, 30, "the request's log line")[-1]
            assert line["status"] == 499 and line["error"] == "client_gone", line
            m = gw.metrics()
            assert m['llmroute_requests_total{route="",model="big",status="499"}'] == 1, m
            assert 'llmroute_requests_total{route="",model="big",status="200"}' not in m
        finally:
            s.close()
    check("a non-stream answer the client never takes is logged 499 client_gone, once the "
          "connection ends", an_answer_the_client_never_takes_is_logged_499)

    def an_answer_the_client_reads_is_logged_200():
        st, _, resp = gwtest.request(gw.port, "POST", "/v1/chat/completions", body, timeout=30)
        assert st == 200 and len(resp) == len(up.body), (st, len(resp))
        line = wait_for(lambda: len(lines()) == 2 and lines(), 10, "the second line")[-1]
        assert line["status"] == 200 and "error" not in line, line
    check("a non-stream answer the client reads is logged 200",
          an_answer_the_client_reads_is_logged_200)

    def a_client_that_half_closes_once_the_answer_began_gets_all_of_it():
        # The client shuts down its sending side once the answer's head is
        # in (it has nothing more to send), then reads the rest. The answer
        # was complete, so the connection was between requests: the end of
        # the input closed it, the 20 MB cut after what the socket buffers
        # held, and the line said 499 client_gone.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect((HOST, gw.port))
        s.settimeout(10)
        try:
            data = body.encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(data), data))
            got = s.recv(1 << 16)
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.3)
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                got += b
        finally:
            s.close()
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert len(rest) == len(up.body), "got %d of %d bytes" % (len(rest), len(up.body))
        line = wait_for(lambda: len(lines()) == 3 and lines(), 10, "the third line")[-1]
        assert line["status"] == 200 and "error" not in line, line
    check("a client that half-closes once the answer's head is in gets the whole answer, "
          "logged 200", a_client_that_half_closes_once_the_answer_began_gets_all_of_it)

    # A client that reads steadily but slowly: a short idle timeout, and an
    # answer that takes about four of them to read. The sockets' buffers
    # hold a few MB at most, so most of it is still queued in the gateway
    # long after idle_timeout_ms.
    up8 = BigAnswers(8 << 20)
    slow = Gateway(gw_bin, wd, {"models": [{"name": "big", "backend": "openai",
                                            "base_url": up8.base_url}],
                                "server": {"idle_timeout_ms": 1500}}, name="slow")

    def a_slow_steady_reader_gets_the_whole_answer_logged_200():
        # It was cut about idle_timeout_ms after the answer was queued: the
        # read timeout ran while the answer was written, the client sending
        # nothing meanwhile. It reads 128 KB every 100 ms: a gap of 1.5 s
        # would take the machine stalling it for that long.
        # Closing after the answer, then keeping the connection with a
        # request pipelined behind it (reading waits for the answer to
        # drain: the drain timer runs instead).
        for n, (close, extra) in enumerate(((True, b""),
                                            (False, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))):
            s = slow_request(slow.port, body, close, extra)
            try:
                data = read_paced(s, 128 << 10, 0.1, 120)
            finally:
                s.close()
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            assert len(rest) >= len(up8.body), "got %d of %d bytes" % (len(rest), len(up8.body))
            if extra:
                assert rest[len(up8.body):].startswith(b"HTTP/1.1 200"), rest[len(up8.body):][:100]
            else:
                assert len(rest) == len(up8.body), len(rest)
            line = wait_for(lambda: [l for l in slow.log_lines()
                                     if l.get("model") == "big" and "status" in l][n:], 10,
                            "the request's log line")[-1]
            assert line["status"] == 200 and "error" not in line, line
    check("a client reading a large answer slowly but steadily gets all of it, logged 200, "
          "however much longer than idle_timeout_ms it takes",
          a_slow_steady_reader_gets_the_whole_answer_logged_200)

    # 12 MB read at about 2.5 MB/s: the sockets' buffers hold a few MB, so
    # at SIGTERM, a second in, most of the answer is still to be written.
    up12 = BigAnswers(12 << 20)
    term = Gateway(gw_bin, wd, {"models": [{"name": "big", "backend": "openai",
                                            "base_url": up12.base_url}],
                                "server": {"shutdown_timeout_ms": 60000}}, name="term")

    def an_answer_being_written_at_sigterm_is_finished():
        # The answer was complete, so the connection was between requests,
        # with nothing read: it was freed at SIGTERM, its answer cut short.
        s = slow_request(term.port, body, False)
        try:
            first = read_paced(s, 256 << 10, 0.1, 120, stop_after=1 << 20)
            term.signal(signal.SIGTERM)
            rest = read_paced(s, 256 << 10, 0.1, 120)
        finally:
            s.close()
        head, _, got = (first + rest).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert len(got) == len(up12.body), "got %d of %d bytes" % (len(got), len(up12.body))
        # It exits once the answer is written, not at the deadline (60 s).
        assert term.wait(15) == 0
        line = [l for l in term.log_lines() if l.get("model") == "big" and "status" in l][-1]
        assert line["status"] == 200 and "error" not in line, line
    check("SIGTERM lets an answer still being written finish, then closes its connection",
          an_answer_being_written_at_sigterm_is_finished)


def slow_readers(gw_bin, fake_bin):
    wd = workdir()
    up, gw, body, lines = big_gateway(gw_bin, wd, 6 << 20)

    def a_reader_slower_than_the_send_buffer_per_idle_timeout_gets_the_whole_answer():
        # 48 KB every 100 ms, about 13 s for the answer: the client reads
        # far more often than every idle_timeout_ms, but the gateway's
        # socket, holding MB, reported room again only after the client had
        # read a good part of them. The connection was cut after about 4 MB,
        # whether the answer closed it, kept it, or a request waited behind
        # it (reading the next one waits for the answer to drain).
        variants = (("Connection: close", True, b""),
                    ("keep-alive", False, b""),
                    ("keep-alive, a request pipelined behind it", False,
                     b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
        for n, (name, close, extra) in enumerate(variants):
            s = slow_request(gw.port, body, close, extra)
            try:
                # To its end: a kept connection is closed once idle after it.
                data = read_paced(s, 48 << 10, 0.1, 100)
            finally:
                s.close()
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), (name, head[:200])
            assert len(rest) >= len(up.body), \
                "%s: got %d of %d bytes" % (name, len(rest), len(up.body))
            if extra:
                assert rest[len(up.body):].startswith(b"HTTP/1.1 200"), \
                    (name, rest[len(up.body):][:100])
            line = wait_for(lambda: lines()[n:], 10, "the request's log line")[-1]
            assert line["status"] == 200 and "error" not in line, (name, line)
    check("a client reading a large answer steadily, but slower than the kernel's send "
          "buffer per idle_timeout_ms, gets all of it, logged 200",
          a_reader_slower_than_the_send_buffer_per_idle_timeout_gets_the_whole_answer)

    fake = Fake(fake_bin, wd)
    streams = Gateway(gw_bin, wd, {"models": [{"name": "f", "backend": "openai",
                                               "base_url": fake.base_url}],
                                   "server": {"idle_timeout_ms": 1000}}, name="streams")

    def a_reader_slower_than_the_send_buffer_per_idle_timeout_gets_the_whole_stream():
        # The same pace on a stream of about 6.7 MB that the upstream sends
        # at once: past stream_buffer_bytes of backlog the upstream is held,
        # and the write timeout cut the connection after about 4 MB.
        fake.scenario("chunks=30000")
        body = json.dumps({"model": "f", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]})
        s = slow_request(streams.port, body, False)
        try:
            data = read_paced(s, 48 << 10, 0.1, 100)
        finally:
            s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        assert data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), \
            "got %d bytes, ending %r" % (len(data), data[-100:])
        line = wait_for(lambda: [l for l in streams.log_lines()
                                 if l.get("model") == "f" and "status" in l], 10,
                        "the request's log line")[-1]
        assert line["status"] == 200 and "error" not in line, line
    check("a client reading a long stream steadily, but slower than the kernel's send "
          "buffer per idle_timeout_ms, gets all of it, logged 200",
          a_reader_slower_than_the_send_buffer_per_idle_timeout_gets_the_whole_stream)

    def a_reload_raising_stream_buffer_bytes_does_not_strand_a_paused_stream():
        # The stream pauses its upstream past the request's own
        # stream_buffer_bytes (4 KiB); the server's drain mark followed a
        # reload to 1 MiB, which the backlog never reached, so the stream
        # was never resumed: stuck until total_ms, or for good without it.
        config = {"models": [{"name": "f", "backend": "openai", "base_url": fake.base_url}],
                  "server": {"idle_timeout_ms": 1000, "stream_buffer_bytes": 4096}}
        g = Gateway(gw_bin, wd, config, name="rebuffer")
        fake.scenario("chunks=30000")
        body = json.dumps({"model": "f", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]})
        s = slow_request(g.port, body, True)
        try:
            first = s.recv(2048)
            config["server"]["stream_buffer_bytes"] = 1 << 20
            g.write_config(config)
            n = len(g.events("reloaded"))
            g.signal(signal.SIGHUP)
            wait_for(lambda: len(g.events("reloaded")) > n, 30, "the reload")
            time.sleep(0.5)  # not reading: the upstream is paused
            data = first + read_paced(s, 1 << 20, 0, 60)
        finally:
            s.close()
        assert data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), \
            "got %d bytes, ending %r" % (len(data), data[-100:])
    check("a stream paused on its client, its upstream held, resumes when the client reads "
          "after a reload raised server.stream_buffer_bytes",
          a_reload_raising_stream_buffer_bytes_does_not_strand_a_paused_stream)

    def a_client_that_reads_nothing_is_closed_after_idle_timeout():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, gw.port))
        try:
            data = body.encode()
            before = len(lines())
            start = time.monotonic()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(data), data))
            line = wait_for(lambda: lines()[before:], 30, "the request's log line")[-1]
            took = time.monotonic() - start
            assert line["status"] == 499 and line["error"] == "client_gone", line
            # Not before idle_timeout_ms (1 s) without progress; the bound
            # above is loose, for a loaded machine: what it rules out is a
            # connection kept open because its queue is looked at.
            assert 0.9 <= took < 15, "closed after %.1f s" % took
        finally:
            s.close()
    check("a client that reads nothing of a large answer is still closed after about "
          "idle_timeout_ms", a_client_that_reads_nothing_is_closed_after_idle_timeout)


def slow_request(port, body, close, extra=b""):
    """A connection with a 64 KB receive buffer that has sent one chat
    request (with Connection: close if `close`), then `extra`."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect((HOST, port))
    data = body.encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s%s"
              % (b"Connection: close\r\n" if close else b"", len(data), data, extra))
    return s


def read_paced(s, chunk, interval, limit, stop_after=None):
    """Read s to its end (or once `stop_after` bytes are read), at most
    `chunk` bytes every `interval` seconds; bounded by `limit` seconds.
    Returns what was read."""
    s.settimeout(10)
    out = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if stop_after is not None and sum(map(len, out)) >= stop_after:
            return b"".join(out)
        want = chunk
        while want > 0:
            try:
                b = s.recv(want)
            except ConnectionResetError:
                return b"".join(out)
            if not b:
                return b"".join(out)
            out.append(b)
            want -= len(b)
        time.sleep(interval)
    raise AssertionError("still reading after %d s" % limit)


def padded(body, n):
    """body (a dict) as JSON text with an unknown member "pad" holding n empty objects:
    three bytes of text each, a few hundred bytes each once parsed."""
    text = json.dumps(body)
    return text[:-1] + ', "pad": [' + ",".join(["{}"] * n) + "]}"


def json_bodies(gw_bin, fake_bin):
    wd = workdir()
    # Under AddressSanitizer freed memory stays resident in its quarantine
    # (256 MB by default): kept small, RSS measures what is held.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=4"}
    more = [{"name": "m%d" % k, "backend": "mock"} for k in range(1, 64)]
    gw = Gateway(gw_bin, wd, {"models": [MOCK] + more, "server": {"log_requests": False}},
                 env=env)
    hi = [{"role": "user", "content": "hi"}]

    def error_of(st, data, want):
        j = json.loads(data)
        assert st == want, (st, j)
        return gwtest.error_shape(j)

    def a_body_of_a_million_values_is_refused_before_its_parse():
        # 1.3 million empty objects fit the 4 MiB body cap, and parsed whole
        # they took over 300 MB (320 MB each of 16 parallel /v1/route bodies,
        # kept while their jobs waited). Counted first, they are refused
        # with nothing parsed.
        n = 1300000
        for path, body in (("/v1/chat/completions", {"model": "m", "messages": hi}),
                           ("/v1/embeddings", {"model": "m", "input": "hi"}),
                           ("/v1/route", {"queries": [{"query": "q"}]})):
            before = gw.peak_rss_kb()
            text = padded(body, n)
            assert len(text) < 4 << 20, len(text)
            st, _, data = gwtest.request(gw.port, "POST", path, text, timeout=30)
            e = error_of(st, data, 413)
            assert e["code"] == "too_many_json_values", e
            assert e["type"] == "invalid_request_error", e
            assert "more than 200000 JSON values" in e["message"], e
            assert "server.max_json_values" in e["message"], e
            grown = gw.peak_rss_kb() - before
            assert grown < 64000, "%s: peak RSS grew by %d kB" % (path, grown)
    check("a body of 1.3 million JSON values (4 MiB) is a 413 too_many_json_values naming "
          "server.max_json_values, and the gateway's peak RSS stays within 64 MB",
          a_body_of_a_million_values_is_refused_before_its_parse)

    def the_largest_route_body_is_under_the_default():
        # 1,000 queries (the most /v1/route takes), each with 64 candidate
        # names (the most a query takes): about 71,000 values.
        body = {"queries": [{"query": "question %d" % i, "input_tokens": 10,
                             "models": ["m"] + [m["name"] for m in more]}
                            for i in range(1000)],
                "strategy": "sequential"}
        st, _, data = gwtest.request(gw.port, "POST", "/v1/route", json.dumps(body),
                                     timeout=30)
        assert st == 200, (st, data[:300])
        assert len(json.loads(data)["assignments"]) == 1000
    check("the largest /v1/route body (1,000 queries of 64 candidates) is under the default "
          "server.max_json_values", the_largest_route_body_is_under_the_default)

    def a_large_bodys_memory_is_handed_back():
        # A body of 190,000 empty objects parses into some 45 MB, freed once
        # the job has its own copies; glibc kept it all resident. (The
        # sanitizers' allocator keeps freed memory its own way.)
        with open("/proc/%d/maps" % gw.proc.pid) as f:
            if "libasan" in f.read():
                return
        body = padded({"queries": [{"query": "q"}], "strategy": "sequential",
                       "models": ["m"]}, 190000)
        before = gw.rss_kb()
        for _ in range(4):
            st, _, data = gwtest.request(gw.port, "POST", "/v1/route", body, timeout=30)
            assert st == 200, (st, data[:300])
        # Handed back a second after the last body.
        wait_for(lambda: gw.rss_kb() - before < 20000, 10,
                 "the RSS back within 20 MB of before (it grew by %d kB)"
                 % (gw.rss_kb() - before))
    check("the memory of a large body's parse is handed back a second after",
          a_large_bodys_memory_is_handed_back)

    def the_limit_is_a_setting():
        g = Gateway(gw_bin, wd, {"models": [MOCK],
                                 "server": {"log_requests": False, "max_json_values": 10}},
                    name="gw10", env=env)
        # Ten values: the object, its four names, "m", the array, the
        # message object and its two strings.
        body = json.dumps({"model": "m", "messages": hi})
        st, _, data = gwtest.request(g.port, "POST", "/v1/chat/completions", body)
        assert st == 200, (st, data)
        body = json.dumps({"model": "m", "messages": hi, "n": 1})
        st, _, data = gwtest.request(g.port, "POST", "/v1/chat/completions", body)
        e = error_of(st, data, 413)
        assert e["code"] == "too_many_json_values" and "more than 10 JSON" in e["message"], e
        cfg = os.path.join(wd, "zero.json")
        with open(cfg, "w") as f:
            json.dump({"models": [MOCK], "server": {"max_json_values": 0}}, f)
        r = subprocess.run([gw_bin, "check-config", cfg], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2 and "server.max_json_values" in r.stderr, (r.returncode,
                                                                           r.stderr)
    check("server.max_json_values sets the bound: a body of exactly that many values is "
          "parsed, one more is a 413; 0 is refused", the_limit_is_a_setting)


GROUPS = {"pipeline": pipeline, "signals": signals, "descriptors": descriptors, "answers": answers,
          "slow_readers": slow_readers, "json": json_bodies}

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in GROUPS:
        sys.exit("usage: test_resources.py %s LLMROUTE FAKE_UPSTREAM" % "|".join(GROUPS))
    GROUPS[sys.argv[1]](sys.argv[2], sys.argv[3])
    finish()
