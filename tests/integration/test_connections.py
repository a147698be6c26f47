"""test_connections.py -- the gateway's client connection cap
(server.max_connections) against its descriptor limit.

    python3 test_connections.py LLMROUTE FAKE_UPSTREAM

A gateway under a low RLIMIT_NOFILE with more idle clients than it has
descriptors for must still forward the requests it accepted (no 502 for want
of an upstream descriptor); clients over the cap wait in the listen backlog
and are accepted, in order, when others close; the cap follows a reload; a
configured cap raises the soft limit when it needs to, or says why it cannot;
bad values are refused naming the key.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import HOST, Fake, Gateway, check, finish, wait_for, workdir  # noqa

HELLO = [{"role": "user", "content": "hello"}]
CHAT = json.dumps({"model": "fake-a", "messages": HELLO}).encode()


def config(fake, server=None):
    cfg = {"models": [{"name": "fake-a", "backend": "openai", "base_url": fake.base_url}],
           "router": {"strategy": "sequential"}}
    if server:
        cfg["server"] = server
    return cfg


class Client:
    """A raw keep-alive connection: send a request, read one response."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=5)
        self.buf = b""

    def send(self, method, path, body=b""):
        self.s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(),
                                                         len(body), body))

    def answered_within(self, seconds):
        """Whether any response bytes arrive within seconds (they stay buffered)."""
        self.s.settimeout(seconds)
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            return False
        finally:
            self.s.settimeout(5)
        assert b, "the gateway closed a waiting client"
        self.buf += b
        return True

    def response(self):
        """(status, body) of the next response (Content-Length bodies only)."""
        while b"\r\n\r\n" not in self.buf:
            b = self.s.recv(65536)
            assert b, "connection closed before a response"
            self.buf += b
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            b = self.s.recv(65536)
            assert b, "connection closed mid-body"
            rest += b
        self.buf = rest[n:]
        return status, rest[:n]

    def get(self, method, path, body=b""):
        self.send(method, path, body)
        return self.response()

    def metrics(self):
        st, body = self.get("GET", "/metrics")
        assert st == 200, st
        m = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
        return m

    def close(self):
        self.s.close()


def low_limit(gw_bin, fake_bin):
    wd = workdir()
    fake = Fake(fake_bin, wd)
    gw = Gateway(gw_bin, wd, config(fake), name="low", nofile=(64, 64))

    def accepted_requests_reach_the_upstream():
        # One accepted client, then far more idle clients than 64 descriptors
        # hold: before the cap they took every descriptor and this chat
        # request, already accepted, failed with 502 (upstream connect:
        # "Too many open files").
        a = Client(gw.port)
        assert a.get("GET", "/health")[0] == 200
        idle = [socket.create_connection((HOST, gw.port), timeout=5) for _ in range(80)]
        try:
            wait_for(lambda: gw.events("accept_paused"), 5, "accepting to pause at the cap")
            for _ in range(3):
                st, body = a.get("POST", "/v1/chat/completions", CHAT)
                assert st == 200, (st, body)
            cap = int(a.metrics()["llmroute_connections_max"])
            m = a.metrics()
            assert m["llmroute_connections_open"] == cap, m
            assert m['llmroute_accept_paused_total{reason="max_connections"}'] == 1, m
            assert m['llmroute_accept_paused_total{reason="descriptors"}'] == 0, m
            started = gw.events("connections")[0]["message"]
            assert "at most %d client connections" % cap in started, started
            assert "descriptor limit 64" in started, started

            # A new client waits (it is not refused, nor reset) ...
            late = Client(gw.port)
            late.send("POST", "/v1/chat/completions", CHAT)
            assert not late.answered_within(0.3), "a client over the cap was served"
            # ... and one leaving and one arriving, at the cap, logs nothing more.
            for i in range(10):
                idle.pop(0).close()
                idle.append(socket.create_connection((HOST, gw.port), timeout=5))
            time.sleep(0.2)
            assert len(gw.events("accept_paused")) == 1, gw.events("accept_paused")
            assert not gw.events("accept_resumed")
            # Once the idle clients leave, the waiting ones are accepted and served.
            for s in idle:
                s.close()
            idle = []
            st, body = late.response()
            assert st == 200 and json.loads(body)["choices"], (st, body)
            late.close()
            wait_for(lambda: gw.events("accept_resumed"), 5, "the end of the pause to be logged")
            assert a.get("POST", "/v1/chat/completions", CHAT)[0] == 200
            a.close()
            statuses = [l["status"] for l in gw.log_lines() if "status" in l]
            assert 502 not in statuses, statuses
        finally:
            for s in idle:
                s.close()
    check("a low descriptor limit: accepted requests get their upstream connection, clients "
          "over the cap wait and are served once others close", accepted_requests_reach_the_upstream)


def configured(gw_bin, fake_bin):
    wd = workdir()
    fake = Fake(fake_bin, wd)
    gw = Gateway(gw_bin, wd, config(fake, {"max_connections": 3}), name="cap3")

    def cap_of_three_and_reload():
        a = Client(gw.port)
        b = Client(gw.port)
        assert a.get("GET", "/health")[0] == 200 and b.get("GET", "/health")[0] == 200
        c = Client(gw.port)
        assert c.get("GET", "/health")[0] == 200
        d = Client(gw.port)
        d.send("GET", "/health")
        assert not d.answered_within(0.3), "a fourth client was served under a cap of 3"
        m = a.metrics()
        assert m["llmroute_connections_open"] == 3 and m["llmroute_connections_max"] == 3, m
        # A reload raises the cap: the waiting client is accepted at once.
        cfg = config(fake, {"max_connections": 4})
        gw.write_config(cfg)
        gw.signal(signal.SIGHUP)
        st, _ = d.response()
        assert st == 200, st
        wait_for(lambda: any("at most 4 " in l["message"] for l in gw.events("connections")),
                 5, "the new cap to be logged")
        # Lowered under the open count it closes nothing; new clients wait
        # until enough have left.
        gw.write_config(config(fake, {"max_connections": 2}))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: any("at most 2 " in l["message"] for l in gw.events("connections")),
                 5, "the lower cap to be logged")
        for cl in (a, b, c, d):
            assert cl.get("GET", "/health")[0] == 200
        e = Client(gw.port)
        e.send("GET", "/health")
        assert not e.answered_within(0.3)
        b.close()
        c.close()
        assert not e.answered_within(0.3), "accepted with 3 open under a cap of 2"
        d.close()
        assert e.response()[0] == 200
        for cl in (a, e):
            cl.close()
    check("server.max_connections 3: the fourth client waits; SIGHUP raises and lowers the cap",
          cap_of_three_and_reload)

    def sigterm_at_the_cap():
        g = Gateway(gw_bin, wd, config(fake, {"max_connections": 1}), name="cap1")
        a = Client(g.port)
        assert a.get("GET", "/health")[0] == 200
        b = Client(g.port)
        b.send("GET", "/health")
        assert not b.answered_within(0.3)
        g.signal(signal.SIGTERM)
        assert g.wait(10) == 0
        a.close()
        b.close()
    check("SIGTERM with clients waiting at the cap exits 0", sigterm_at_the_cap)


def limits(gw_bin, fake_bin):
    wd = workdir()
    fake = Fake(fake_bin, wd)

    def soft_limit(pid):
        for line in open("/proc/%d/limits" % pid):
            if line.startswith("Max open files"):
                return int(line.split()[3])
        raise AssertionError("no Max open files in /proc/%d/limits" % pid)

    def raises_the_soft_limit():
        g = Gateway(gw_bin, wd, config(fake, {"max_connections": 100}), name="raise",
                    nofile=(64, 4096))
        msg = g.events("connections")[0]["message"]
        assert "raised the descriptor limit from 64 to" in msg, msg
        soft = soft_limit(g.proc.pid)
        assert 200 < soft < 400, soft  # 2 per connection and the reserve, not the hard limit
        g.signal(signal.SIGTERM)
        assert g.wait(10) == 0
    check("a configured cap over the soft limit raises it, as far as it needs",
          raises_the_soft_limit)

    def warns_when_it_cannot_fit():
        g = Gateway(gw_bin, wd, config(fake, {"max_connections": 100}), name="nofit",
                    nofile=(64, 64))
        msg = g.events("connections")[0]["message"]
        assert "warning" in msg and "server.max_connections" in msg and "64" in msg, msg
        assert soft_limit(g.proc.pid) == 64
        g.signal(signal.SIGTERM)
        assert g.wait(10) == 0
    check("a configured cap the hard limit cannot fit starts with a warning",
          warns_when_it_cannot_fit)

    def bad_values_are_refused():
        for bad in (-1, 0, "ten", 2.5, True, 2000000):
            path = os.path.join(wd, "bad.json")
            with open(path, "w") as f:
                json.dump(config(fake, {"max_connections": bad}), f)
            r = subprocess.run([gw_bin, "serve", "--config", path, "--listen", HOST + ":0"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.max_connections: expected an integer from 1 to 1048576" in r.stderr, (
                bad, r.stderr)
    check("server.max_connections: a value that is not an integer from 1 to 1048576 is "
          "refused naming the key", bad_values_are_refused)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: test_connections.py LLMROUTE FAKE_UPSTREAM")
    low_limit(sys.argv[1], sys.argv[2])
    configured(sys.argv[1], sys.argv[2])
    limits(sys.argv[1], sys.argv[2])
    finish()
