#!/usr/bin/env python3
"""test_drain.py -- the gateway's lifecycle at its edges: a reload's capacity
limits reaching the requests already waiting for room, and what a request
caught by a shutdown, or by the timeout on a slow body, is answered and
logged as.

Usage: test_drain.py LLMROUTE_BIN FAKE_UPSTREAM_BIN
"""
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Fake, Gateway, Upstream, check, finish, read_request,  # noqa
                    request, status_of, wait_for, workdir)

HELLO = [{"role": "user", "content": "hello"}]
ANSWER = json.dumps({
    "id": "chatcmpl-held", "object": "chat.completion", "created": 1, "model": "held",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


class Holding(Upstream):
    """An upstream that holds every request until the test releases it
    (release(n) lets the n oldest held go), then answers 200 and closes the
    connection. Counts the requests it holds now and the most at once."""

    def __init__(self):
        super().__init__()
        self.cond = threading.Condition()
        self.held = []  # one Event per request held, oldest first
        self.arrived = 0
        self.most = 0
        self.start()

    def serve(self, c):
        c.settimeout(60)
        ev = threading.Event()
        try:
            read_request(c)
            with self.cond:
                self.held.append(ev)
                self.arrived += 1
                self.most = max(self.most, len(self.held))
                self.cond.notify_all()
            ev.wait(60)
            with self.cond:
                if ev in self.held:
                    self.held.remove(ev)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER)
        except (OSError, ConnectionError, IndexError):
            pass
        finally:
            with self.cond:
                if ev in self.held:
                    self.held.remove(ev)
            c.close()

    def holding(self):
        with self.cond:
            return len(self.held)

    def release(self, n=1):
        with self.cond:
            for ev in self.held[:n]:
                ev.set()

    def release_all(self):
        with self.cond:
            for ev in self.held:
                ev.set()


def cap_config(up, cap, server=None):
    cfg = {"models": [{"name": "fa", "backend": "openai", "base_url": up.base_url,
                       "max_concurrency": cap}],
           "server": {"shutdown_timeout_ms": 5000,
                      "resilience": {"queue": {"max_waiting": 20, "max_wait_ms": 60000},
                                     "retry": {"deadline_ms": 120000},
                                     "timeouts": {"first_byte_ms": 60000}}}}
    if server:
        cfg["server"].update(server)
    return cfg


def send_many(port, n, got):
    """n chat requests to model fa, each on a thread; got[i] its (status, body) or exception."""
    def one(i):
        try:
            st, _, body = request(port, "POST", "/v1/chat/completions",
                                  json.dumps({"model": "fa", "messages": HELLO}), timeout=60)
            got[i] = (st, body)
        except Exception as ex:
            got[i] = ex
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    return ts


def metric(gw, key):
    return gw.metrics().get(key, 0)


def reload_raises_cap(gw_bin, fake_bin):
    # Cap 1, one request held upstream and 7 waiting for room; a reload to cap 10
    # starts the 7 at once, not one per finished attempt.
    wd = workdir()
    up = Holding()
    gw = Gateway(gw_bin, wd, cap_config(up, 1), name="gw-raise")
    got = {}
    ts = send_many(gw.port, 8, got)
    wait_for(lambda: up.holding() == 1 and metric(gw, "llmroute_queue_waiting") == 7, 20,
             "one request upstream and 7 waiting")
    gw.write_config(cap_config(up, 10))
    gw.signal(signal.SIGHUP)
    wait_for(lambda: gw.events("reloaded"), 10, "the reload")
    wait_for(lambda: up.holding() == 8, 20, "the 7 waiting requests to start under cap 10")
    assert metric(gw, "llmroute_queue_waiting") == 0
    up.release_all()
    for t in ts:
        t.join(60)
    assert all(got[i][0] == 200 for i in range(8)), got


def reload_lowers_cap(gw_bin, fake_bin):
    # Cap 3, three requests held upstream and three waiting; a reload to cap 1: no
    # waiting request starts until fewer than 1 attempt is in flight, so the upstream
    # never has more than 1 of them at once from then on.
    wd = workdir()
    up = Holding()
    gw = Gateway(gw_bin, wd, cap_config(up, 3), name="gw-lower")
    inflight = 'llmroute_in_flight{model="fa"}'
    got = {}
    ts = send_many(gw.port, 3, got)
    wait_for(lambda: up.holding() == 3, 20, "three requests upstream")
    more = {}
    ts += send_many(gw.port, 3, more)
    wait_for(lambda: metric(gw, "llmroute_queue_waiting") == 3, 20, "three waiting")
    gw.write_config(cap_config(up, 1))
    gw.signal(signal.SIGHUP)
    wait_for(lambda: gw.events("reloaded"), 10, "the reload")
    for left in (2, 1):
        done = len(got)
        up.release(1)
        wait_for(lambda: len(got) > done, 20, "a held request's answer")
        # The metrics request is read after the attempt ended and the queue was run.
        m = gw.metrics()
        assert m[inflight] == left and m["llmroute_queue_waiting"] == 3, \
            (left, m[inflight], m["llmroute_queue_waiting"])
    up.release(1)
    arrived = up.arrived
    for _ in range(3):  # each waiting request now starts alone
        wait_for(lambda: up.arrived > arrived, 20, "a waiting request to start")
        arrived = up.arrived
        assert up.holding() == 1 and metric(gw, inflight) == 1, \
            (up.holding(), metric(gw, inflight))
        up.release(1)
    for t in ts:
        t.join(60)
    assert all(v[0] == 200 for v in list(got.values()) + list(more.values())), (got, more)


def stream_until_first_event(port, model):
    """A stream request on a raw socket, read until its first event: the socket."""
    body = json.dumps({"model": model, "stream": True, "messages": HELLO}).encode()
    s = socket.create_connection((HOST, port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
              + body)
    got = b""
    while b"data: " not in got:
        b = s.recv(65536)
        if not b:
            raise AssertionError("closed before the stream's first event: %r" % got)
        got += b
    return s, got


def read_all(s, timeout=30):
    out = b""
    s.settimeout(timeout)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError as ex:
        out += b" EXC " + str(ex).encode()
    return out


def second_signal_answers(gw_bin, fake_bin, sig):
    # A request held upstream and a stream already started, SIGTERM (or SIGINT) with a
    # long shutdown_timeout_ms, then the same signal again: the gateway stops at once,
    # but the request gets a 503 server_shutting_down and the stream an error event
    # (no [DONE]), each logged as 503 "shutdown" before `stopped`; exit 0.
    wd = workdir()
    hang, stall = Fake(fake_bin, wd, name="hang"), Fake(fake_bin, wd, name="stall")
    hang.scenario("hang")
    stall.scenario("stall_after=3")
    res = {"timeouts": {"first_byte_ms": 120000, "idle_ms": 120000}}
    cfg = {"models": [{"name": "hang", "backend": "openai", "base_url": hang.base_url},
                      {"name": "stall", "backend": "openai", "base_url": stall.base_url}],
           "server": {"shutdown_timeout_ms": 120000, "resilience": res}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-twice-%d" % sig)
    got = {}

    def plain():
        try:
            got["plain"] = request(gw.port, "POST", "/v1/chat/completions",
                                   json.dumps({"model": "hang", "messages": HELLO}), timeout=60)
        except Exception as ex:
            got["plain"] = ex
    t = threading.Thread(target=plain)
    t.start()
    s, first = stream_until_first_event(gw.port, "stall")
    wait_for(lambda: metric(gw, 'llmroute_in_flight{model="hang"}') == 1, 20,
             "the plain request upstream")
    gw.signal(sig)
    wait_for(lambda: gw.events("shutdown"), 20, "the first signal's shutdown event")
    t0 = time.monotonic()
    gw.signal(sig)
    rest = read_all(s)
    s.close()
    t.join(60)
    assert gw.wait(60) == 0
    assert time.monotonic() - t0 < 30, time.monotonic() - t0  # not the 120 s deadline
    raw = first + rest
    assert b'"code":"server_shutting_down"' in raw and b"[DONE]" not in raw, raw[-400:]
    assert not isinstance(got["plain"], Exception), got["plain"]
    st, _, body = got["plain"]
    assert st == 503 and json.loads(body)["error"]["code"] == "server_shutting_down", (st, body)
    lines = gw.log_lines()
    stopped = [i for i, l in enumerate(lines) if l.get("event") == "stopped"]
    reqs = [(i, l) for i, l in enumerate(lines) if l.get("path") == "/v1/chat/completions"]
    assert stopped and len(reqs) == 2, lines
    for i, l in reqs:
        assert i < stopped[0] and l["status"] == 503 and l["error"] == "shutdown", l
    hang.proc.terminate()
    stall.proc.terminate()


def pipelined_request_served_while_draining(gw_bin, fake_bin, second="chat"):
    # A stream and, pipelined behind it in the same write, a second request. SIGTERM
    # while the stream runs (its head, sent before the drain, promised keep-alive): the
    # stream finishes, then the second request, already received, is served with
    # Connection: close and logged, and the gateway exits 0. A chat is answered as
    # usual; GET /health answers 503 with status "draining", so that a load balancer's
    # probe takes the instance out of rotation.
    wd = workdir()
    slow = Fake(fake_bin, wd, name="slowstream")
    slow.scenario("chunks=10;chunk_delay_ms=300")
    cfg = {"models": [{"name": "slow", "backend": "openai", "base_url": slow.base_url},
                      {"name": "mocky", "backend": "mock", "mock": {"content": "second"}}],
           "server": {"shutdown_timeout_ms": 60000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-pipeline-" + second)
    b1 = json.dumps({"model": "slow", "stream": True, "messages": HELLO}).encode()
    b2 = json.dumps({"model": "mocky", "messages": HELLO}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n")
    if second == "chat":
        req2 = head % len(b2) + b2
    else:
        req2 = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    s = socket.create_connection((HOST, gw.port), timeout=30)
    s.sendall(head % len(b1) + b1 + req2)
    got = b""
    while b"data: " not in got:
        b = s.recv(65536)
        assert b, got
        got += b
    gw.signal(signal.SIGTERM)
    got += read_all(s)
    s.close()
    assert gw.wait(60) == 0
    first, sep, second_raw = got.partition(b"0\r\n\r\n")
    assert sep and b"data: [DONE]" in first, got[-300:]
    assert b"Connection: close\r\n" in second_raw, second_raw
    answer = json.loads(second_raw.partition(b"\r\n\r\n")[2])
    reqs = [l for l in gw.log_lines() if l.get("path") == "/v1/chat/completions"]
    if second == "chat":
        assert status_of(second_raw) == 200, second_raw
        assert answer["choices"][0]["message"]["content"] == "second", second_raw
        assert [(l["model"], l["status"]) for l in reqs] == [("slow", 200), ("mocky", 200)], reqs
    else:
        assert status_of(second_raw) == 503, second_raw
        assert answer["status"] == "draining" and answer["version"], answer
        assert [(l["model"], l["status"]) for l in reqs] == [("slow", 200)], reqs
    slow.proc.terminate()


def sighup_while_draining_is_skipped(gw_bin, fake_bin):
    # A stream runs, SIGTERM, then the config file gains a model and SIGHUP comes: the
    # reload is skipped and logged (reload_skipped, reason draining), not applied
    # (the gateway reloaded it: a `reloaded` event, the reload counted), the stream
    # still ends with [DONE], and the gateway exits 0.
    wd = workdir()
    slow = Fake(fake_bin, wd, name="hupstream")
    slow.scenario("chunks=8;chunk_delay_ms=150")
    cfg = {"models": [{"name": "slow", "backend": "openai", "base_url": slow.base_url}],
           "server": {"shutdown_timeout_ms": 60000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-hup-drain")
    s, got = stream_until_first_event(gw.port, "slow")
    gw.signal(signal.SIGTERM)
    wait_for(lambda: gw.events("shutdown"), 20, "the shutdown event")
    cfg["models"].append({"name": "late", "backend": "mock"})
    gw.write_config(cfg)
    gw.signal(signal.SIGHUP)
    wait_for(lambda: gw.events("reload_skipped"), 20, "a reload_skipped event")
    got += read_all(s)
    s.close()
    assert gw.wait(60) == 0
    assert b"data: [DONE]" in got, got[-300:]
    ev = gw.events("reload_skipped")
    assert len(ev) == 1 and ev[0]["reason"] == "draining", ev
    assert ev[0]["message"], ev
    assert not gw.events("reloaded") and not gw.events("reload_failed"), gw.log_lines()
    reqs = [l for l in gw.log_lines() if l.get("path") == "/v1/chat/completions"]
    assert [(l["model"], l["status"]) for l in reqs] == [("slow", 200)], reqs
    slow.proc.terminate()


# Where a body stops: a Content-Length body after 10 bytes, or a chunked one
# inside a chunk's data, after a whole chunk (its next size line due), and
# after the last chunk (its trailer section's end due).
FRAMINGS = ("length", "chunk data", "chunk size", "trailer")


def send_partial_body(port, model="mocky", sent=10, framing="length"):
    """A chat request whose head is whole and whose body stops short
    (FRAMINGS): the socket."""
    body = json.dumps({"model": model, "messages": HELLO}).encode()
    s = socket.create_connection((HOST, port), timeout=30)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if framing == "length":
        s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:sent])
        return s
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (len(body), body)
    s.sendall(head + {"chunk data": chunk[:sent], "chunk size": chunk,
                      "trailer": chunk + b"0\r\n"}[framing])
    return s


# What send_partial_body() has sent of each framing, as an answer names it.
_BODY_LEN = len(json.dumps({"model": "mocky", "messages": HELLO}).encode())
BODY_BROUGHT = {
    "length": "it had brought 10 of the %d bytes its Content-Length announced" % _BODY_LEN,
    "chunk data": "it had brought %d bytes of chunked data and no last chunk (0)"
                  % (10 - len(b"%x\r\n" % _BODY_LEN)),
    "chunk size": "it had brought %d bytes of chunked data and no last chunk (0)" % _BODY_LEN,
    "trailer": "it had brought its last chunk but not the empty line that ends the trailer "
               "section",
}


def body_unfinished_at_deadline(gw_bin, fake_bin):
    # A request whose body is still coming in when SIGTERM's deadline (1 s) passes:
    # 503 server_shutting_down with Connection: close, logged as 503 shutdown before
    # `stopped`; exit 0. A chunked body, whichever part of it was due, was cut off
    # unanswered and unlogged.
    wd = workdir()
    cfg = {"models": [{"name": "mocky", "backend": "mock"}],
           "server": {"shutdown_timeout_ms": 1000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-slowbody-term")
    socks = [send_partial_body(gw.port, framing=f) for f in FRAMINGS]
    wait_for(lambda: metric(gw, "llmroute_connections_open") >= len(socks), 20,
             "the connections")
    gw.signal(signal.SIGTERM)
    raws = []
    for s in socks:
        raws.append(read_all(s))
        s.close()
    assert gw.wait(60) == 0
    for f, raw in zip(FRAMINGS, raws):
        assert status_of(raw) == 503 and b"Connection: close\r\n" in raw, (f, raw)
        e = json.loads(raw.partition(b"\r\n\r\n")[2])["error"]
        assert e["code"] == "server_shutting_down" and e["type"] == "server_error", (f, e)
    lines = gw.log_lines()
    stopped = [i for i, l in enumerate(lines) if l.get("event") == "stopped"]
    reqs = [(i, l) for i, l in enumerate(lines) if l.get("path") == "/v1/chat/completions"]
    assert stopped and len(reqs) == len(socks), lines
    for i, l in reqs:
        assert i < stopped[0] and l["status"] == 503 and l["error"] == "shutdown", l


def slow_body_timeout_answers_408(gw_bin, fake_bin):
    # A body that stops coming in after a whole head: once server.idle_timeout_ms has
    # passed, 408 request_timeout with Connection: close, logged and counted as 408.
    # A chunked body, whichever part of it was due, was cut off with no answer and
    # no log line.
    wd = workdir()
    cfg = {"models": [{"name": "mocky", "backend": "mock"}],
           "server": {"idle_timeout_ms": 1000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-slowbody")
    for f in FRAMINGS:
        s = send_partial_body(gw.port, framing=f)
        raw = read_all(s)
        s.close()
        assert status_of(raw) == 408 and b"Connection: close\r\n" in raw, (f, raw)
        e = json.loads(raw.partition(b"\r\n\r\n")[2])["error"]
        assert e["code"] == "request_timeout", (f, e)
        # The message says what had come of the body, so that a client whose
        # Content-Length says more than it sends (or whose chunked body lacks
        # its last chunk) sees what the server waited for, not only a time.
        assert "server.idle_timeout_ms (1000 ms" in e["message"], (f, e)
        assert BODY_BROUGHT[f] in e["message"], (f, e)
    reqs = [l for l in gw.log_lines() if l.get("path") == "/v1/chat/completions"]
    assert len(reqs) == len(FRAMINGS) and all(l["status"] == 408 for l in reqs), reqs
    m = gw.metrics()
    key = 'llmroute_http_requests_total{endpoint="/v1/chat/completions",status="408"}'
    assert m.get(key) == len(FRAMINGS), {k: v for k, v in m.items() if "http_requests" in k}
    # A head that never ends is still closed with no answer (nothing to answer yet).
    s = socket.create_connection((HOST, gw.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    assert read_all(s) == b""
    s.close()


def body_cut_short_answers_400(gw_bin, fake_bin):
    # A client whose input ends (it shuts its sending side) inside a body,
    # Content-Length or chunked: the request can never be whole, and the
    # client still reads. 400 at once, naming what had come of the body,
    # Connection: close, logged and counted. The connection was closed with
    # no answer and no log line.
    wd = workdir()
    cfg = {"models": [{"name": "mocky", "backend": "mock"}],
           "server": {"idle_timeout_ms": 30000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-cutbody")
    for f in FRAMINGS:
        s = send_partial_body(gw.port, framing=f)
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        raw = read_all(s, timeout=10)
        took = time.monotonic() - t0
        s.close()
        assert status_of(raw) == 400 and b"Connection: close\r\n" in raw, (f, raw)
        assert took < 5, (f, took)
        e = json.loads(raw.partition(b"\r\n\r\n")[2])["error"]
        assert e["message"] == ("the client's input ended inside the request body: " +
                                BODY_BROUGHT[f]), (f, e)
    reqs = [l for l in gw.log_lines() if l.get("path") == "/v1/chat/completions"]
    assert len(reqs) == len(FRAMINGS) and all(l["status"] == 400 for l in reqs), reqs
    wait_for(lambda: metric(gw, "llmroute_connections_open") == 1, 10,
             "the connections closed (but the scrape's)")


def head_cut_short_answers_400(gw_bin, fake_bin):
    # A client's input that ends inside a request head (no empty line ended
    # it: a request written by hand that forgot it) is answered 400 at once,
    # naming that, and logged; it was closed with an empty reply. One that
    # ends with nothing begun (an idle keep-alive connection) still closes
    # in silence, after the answers already made.
    wd = workdir()
    cfg = {"models": [{"name": "mocky", "backend": "mock"}],
           "server": {"idle_timeout_ms": 30000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-cuthead")
    why = b"the client's input ended inside the request head: no empty line (CRLF CRLF) ended it"
    for sent, statuses in ((b"GET /health HTTP/1.0\r\n", [400]),
                           (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea", [200, 400]),
                           (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", [200]),
                           (b"", [])):
        s = socket.create_connection((HOST, gw.port), timeout=10)
        s.sendall(sent)
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        raw = read_all(s, timeout=10)
        s.close()
        got = [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
        assert got == statuses and time.monotonic() - t0 < 5, (sent, raw)
        assert (why in raw) == (400 in statuses), (sent, raw)
    wait_for(lambda: sum(1 for l in gw.log_lines() if l.get("status") == 400 and
                         l.get("error") == why.decode()) == 2, 10, "the two refusals' lines")



def blank_lines_do_not_hold_the_drain(gw_bin, fake_bin):
    # Empty lines are no request (RFC 9112 section 2.2): a connection whose input holds
    # nothing else is idle. A stream with two empty lines sent behind it, and an idle
    # connection that has sent a lone CR; SIGTERM while the stream runs, with a 60 s
    # shutdown_timeout_ms. The idle connection closes at once, the stream's when the
    # stream ends, and the gateway exits 0 long before the deadline.
    wd = workdir()
    cfg = {"models": [{"name": "slow", "backend": "mock",
                       "mock": {"chunks": 10, "chunk_delay_ms": 300}}],
           "server": {"shutdown_timeout_ms": 60000, "idle_timeout_ms": 60000}}
    gw = Gateway(gw_bin, wd, cfg, name="gw-blank-lines")
    idle = socket.create_connection((HOST, gw.port), timeout=30)
    idle.sendall(b"\r")
    body = json.dumps({"model": "slow", "stream": True, "messages": HELLO}).encode()
    s = socket.create_connection((HOST, gw.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
              + body + b"\r\n\r\n")
    got = b""
    while b"data: " not in got:
        b = s.recv(65536)
        assert b, got
        got += b
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    rest = read_all(idle, 30)
    assert rest == b"", rest  # closed in silence, not held (a timeout reads " EXC ...")
    idle_s = time.monotonic() - t0
    got += read_all(s, 30)
    s.close()
    idle.close()
    assert gw.wait(30) == 0
    assert idle_s < 10, idle_s  # not the 60 s deadline
    assert time.monotonic() - t0 < 20, time.monotonic() - t0
    assert b"data: [DONE]" in got and got.endswith(b"0\r\n\r\n"), got[-300:]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gw_bin, fake_bin = sys.argv[1], sys.argv[2]
    check("SIGHUP raising max_concurrency starts the requests already waiting for room",
          reload_raises_cap, gw_bin, fake_bin)
    check("SIGHUP lowering max_concurrency holds the requests already waiting to the new cap",
          reload_lowers_cap, gw_bin, fake_bin)
    check("a second SIGTERM stops at once, answering what is in flight (503, an error "
          "event), logged as shutdown", second_signal_answers, gw_bin, fake_bin, signal.SIGTERM)
    check("a second SIGINT likewise", second_signal_answers, gw_bin, fake_bin, signal.SIGINT)
    check("a pipelined request already received when the drain begins is served, with "
          "Connection: close", pipelined_request_served_while_draining, gw_bin, fake_bin)
    check("GET /health pipelined behind a stream when the drain begins answers 503, status "
          "draining, with Connection: close", pipelined_request_served_while_draining,
          gw_bin, fake_bin, "health")
    check("a SIGHUP during a SIGTERM drain is skipped and logged (reload_skipped, reason "
          "draining); the stream in flight still finishes and the exit is 0",
          sighup_while_draining_is_skipped, gw_bin, fake_bin)
    check("a request whose body (Content-Length or chunked) is still arriving at the shutdown "
          "deadline gets 503 server_shutting_down, logged", body_unfinished_at_deadline,
          gw_bin, fake_bin)
    check("a body (Content-Length or chunked) slower than server.idle_timeout_ms after a whole "
          "head gets 408 request_timeout, logged and counted", slow_body_timeout_answers_408,
          gw_bin, fake_bin)
    check("a body (Content-Length or chunked) whose client's input ends before it is whole "
          "gets 400 at once, naming what had come, logged", body_cut_short_answers_400,
          gw_bin, fake_bin)
    check("a head whose client's input ends before its empty line gets 400 at once, logged; "
          "an input ending with nothing begun closes in silence", head_cut_short_answers_400,
          gw_bin, fake_bin)
    check("during a drain, a connection whose input is only empty lines (or a lone CR) is "
          "idle: closed, not held to the deadline", blank_lines_do_not_hold_the_drain,
          gw_bin, fake_bin)
    finish()


if __name__ == "__main__":
    main()
