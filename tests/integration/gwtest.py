"""gwtest.py -- what the gateway's integration tests share: starting the fake
upstream and `llmroute serve` on 127.0.0.1 with ports chosen by the OS,
bounded waits, HTTP helpers, and killing every process at exit.

Only the standard library is used, so the tests run wherever python3 does.
"""
import atexit
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
_procs = []
_gateways = []
_failures = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_cleanup)


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def _read_port(path, proc, name, log, timeout=10):
    def ready():
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s; its stderr:\n%s"
                                 % (name, proc.returncode, open(log).read()))
        try:
            s = open(path).read().strip()
            return int(s) if s else None
        except (OSError, ValueError):
            return None
    return wait_for(ready, timeout, name + " to listen")


class Fake:
    """The fake OpenAI-compatible upstream; args are more of its options (["--max-body", "1000"])."""

    def __init__(self, binary, workdir, name="fake", args=None):
        self.log = os.path.join(workdir, name + ".jsonl")
        self.stderr = os.path.join(workdir, name + ".err")
        port_file = os.path.join(workdir, name + ".port")
        self.proc = subprocess.Popen(
            [binary, "--listen", HOST + ":0", "--port-file", port_file, "--log", self.log,
             "--name", name] + list(args or []),
            stdout=subprocess.DEVNULL, stderr=open(self.stderr, "w"))
        _procs.append(self.proc)
        self.port = _read_port(port_file, self.proc, "fake upstream", self.stderr)
        self.base_url = "http://%s:%d/v1" % (HOST, self.port)

    def scenario(self, spec):
        st, _, body = request(self.port, "POST", "/_control",
                              json.dumps({"scenario": spec, "reset": True}))
        assert st == 200, (st, body)

    def logged(self):
        with open(self.log, encoding="utf-8") as f:
            return [json.loads(l) for l in f if l.strip()]


class Upstream:
    """A raw upstream of the tests' own, on HOST at a free port: each
    connection is served by self.serve(conn) on a thread of its own (the
    subclass's), after self.accepted() (a hook; counts nothing here)."""

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.base_url = "http://%s:%d/v1" % (HOST, self.port)

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def accepted(self):
        pass

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted()
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()


class Gateway:
    """`llmroute serve` on a config written from a dict; nofile=(soft, hard) runs it under
    that RLIMIT_NOFILE; args are more serve options (["--store-read-only"]); start_timeout
    is how long it may take to listen (a large store takes a while to open, longer under
    the sanitizers)."""

    def __init__(self, binary, workdir, config, name="gw", env=None, nofile=None, args=None,
                 start_timeout=10):
        self.workdir = workdir
        self.config_path = os.path.join(workdir, name + ".json")
        self.write_config(config)
        self.stderr = os.path.join(workdir, name + ".err")
        port_file = os.path.join(workdir, name + ".port")
        e = dict(os.environ)
        e.update(env or {})

        def limit():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", self.config_path, "--listen", HOST + ":0",
             "--port-file", port_file] + list(args or []),
            stdout=subprocess.DEVNULL, stderr=open(self.stderr, "w"), env=e,
            preexec_fn=limit if nofile else None)
        self.waited = False
        _procs.append(self.proc)
        _gateways.append(self)
        self.port = _read_port(port_file, self.proc, "llmroute serve", self.stderr,
                               start_timeout)

    def write_config(self, config):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f)
        os.replace(tmp, self.config_path)

    def log_lines(self):
        out = []
        with open(self.stderr, encoding="utf-8", errors="replace") as f:
            for l in f:
                l = l.strip()
                if l.startswith("{"):
                    try:
                        out.append(json.loads(l))
                    except ValueError:
                        pass
        return out

    def metrics(self):
        st, _, body = request(self.port, "GET", "/metrics")
        assert st == 200, st
        return parse_metrics(body.decode())

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    return int(l.split()[1])
        return 0

    def peak_rss_kb(self):
        """The most RSS the process has had (VmHWM)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    return int(l.split()[1])
        return 0

    def under_tsan(self):
        """Whether the gateway runs the ThreadSanitizer build, whose shadow
        memory grows with every byte touched: memory bounds do not hold
        there, its pass runs such tests for races."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return "libtsan" in f.read()

    def events(self, name):
        """The JSON log lines of one event."""
        return [l for l in self.log_lines() if l.get("event") == name]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15):
        """Wait for the exit a test caused (a signal): its status is the test's to check."""
        self.waited = True
        return self.proc.wait(timeout=timeout)


def parse_metrics(text):
    m = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        m[key] = float(value)
    return m


def read_request(c):
    """One HTTP request with a Content-Length body read from socket c, for a
    scripted upstream: (head bytes, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        b = c.recv(65536)
        if not b:
            raise ConnectionError("closed before the request's head ended")
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n")
             if l.lower().startswith(b"content-length")][0])
    while len(body) < n:
        b = c.recv(65536)
        if not b:
            raise ConnectionError("closed before the request's body ended")
        body += b
    return head, body


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, headers dict lowercased, body bytes)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, data


def chat(port, payload, headers=None, timeout=10):
    st, h, body = request(port, "POST", "/v1/chat/completions", json.dumps(payload), headers,
                          timeout)
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    return st, h, j, body


def read_to_close(s, timeout=5):
    """What arrives on socket s until the server closes it, resets it or
    timeout seconds pass."""
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        out += b
    return out


def raw_exchange(port, data, timeout=5):
    """Send raw bytes, read until the server closes or timeout: the response bytes."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_to_close(s, timeout)
    finally:
        s.close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


_HELD_PORTS = []


def closed_port():
    """A port on 127.0.0.1 that nothing listens on: bound and never listened
    on, and held so for the life of the test process, so a connection to it
    is refused. (Bound and released, the port went back to the kernel's
    pool, and a test running beside could take it: an attempt meant to be
    refused then met a server.)"""
    s = socket.socket()
    s.bind((HOST, 0))
    _HELD_PORTS.append(s)
    return s.getsockname()[1]


def error_shape(j):
    """The OpenAI error object, after checking its shape."""
    assert isinstance(j, dict) and set(j) == {"error"}, j
    e = j["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    return e


# ==== A history store and a smart route, for the tests that need one ====

def import_ok(bin_, store, path):
    """`llmroute import --store store path`, which must succeed."""
    r = subprocess.run([bin_, "import", "--store", store, path], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)


def history_records(port):
    """The gateway's record count, as /health reports it."""
    st, _, body = request(port, "GET", "/health")
    assert st == 200, st
    return json.loads(body)["history_records"]


def smart_history(path, n, tag, pad=0, kinds=("arithmetic", "code")):
    """A history of n records for smart_config's models, the kinds taken in
    turn: arithmetic (both right), code and translation (only 'smarty'
    right); queries unique by tag. With pad, each record's task is that many
    bytes: a large transaction that costs little to parse or index (a task
    is stored, not embedded)."""
    with open(path, "w") as f:
        for i in range(n):
            kind = kinds[i % len(kinds)]
            if kind == "arithmetic":
                rec = {"query": "What is %d plus %d? (%s)" % (i, i + 3, tag),
                       "input_token_length": 8,
                       "outputs": [{"model_name": "cheapo", "correctness": 1,
                                    "output_token_length": 4},
                                   {"model_name": "smarty", "correctness": 1,
                                    "output_token_length": 6}]}
            elif kind == "code":
                rec = {"query": "Write a python function parse_%d that reads a csv file into "
                                "a list of dicts (%s)" % (i, tag),
                       "input_token_length": 20,
                       "outputs": [{"model_name": "cheapo", "correctness": 0,
                                    "output_token_length": 90},
                                   {"model_name": "smarty", "correctness": 1,
                                    "output_token_length": 120}]}
            else:
                rec = {"query": "Translate the poem number %d about autumn leaves into french "
                                "(%s)" % (i, tag),
                       "input_token_length": 14,
                       "outputs": [{"model_name": "cheapo", "correctness": 0,
                                    "output_token_length": 60},
                                   {"model_name": "smarty", "correctness": 1,
                                    "output_token_length": 70}]}
            if pad:
                rec["task"] = ("task %d " % i).ljust(pad, "x")
            f.write(json.dumps(rec) + "\n")


def smart_config(store):
    """Two mock models, 'cheapo' and 'smarty', over the store; the route
    'auto' is smart (aios predictor, requirement 0.7)."""
    return {
        "models": [
            {"name": "cheapo", "backend": "mock", "cost_per_input_token": 1e-7,
             "cost_per_output_token": 2e-7, "mock": {"content": "cheap answer"}},
            {"name": "smarty", "backend": "mock", "cost_per_input_token": 1e-5,
             "cost_per_output_token": 3e-5, "mock": {"content": "careful answer"}},
        ],
        "router": {"strategy": "sequential", "store": store, "predictor": "aios"},
        "routes": [{"name": "auto", "strategy": "smart", "models": ["cheapo", "smarty"],
                    "performance_requirement": 0.7}],
    }


def check(name, fn, *args):
    try:
        fn(*args)
        print("ok   - " + name, flush=True)
    except Exception as ex:  # report every failure, keep going
        import traceback
        _failures.append(name)
        print("FAIL - %s: %r" % (name, ex), flush=True)
        traceback.print_exc()


def _stop_gateways():
    """SIGTERM each gateway still running: it must exit 0 (under the sanitizers this is also
    where leaks are reported). A gateway that exited when no test stopped it (a crash, a
    sanitizer's abort) fails the run too, even if every check passed."""
    for g in _gateways:
        if g.proc.poll() is not None:
            if not g.waited:
                _failures.append("gateway exit")
                tail = open(g.stderr, errors="replace").read()[-4000:]
                print("FAIL - a gateway exited %s with no test stopping it; stderr tail:\n%s"
                      % (g.proc.returncode, tail))
            continue
        g.proc.send_signal(signal.SIGTERM)
        try:
            rc = g.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            rc = "no exit within 15 s"
        if rc != 0:
            _failures.append("gateway exit")
            tail = open(g.stderr, errors="replace").read()[-4000:]
            print("FAIL - gateway exited %s after SIGTERM; stderr tail:\n%s" % (rc, tail))


def finish():
    _stop_gateways()
    _cleanup()
    if _failures:
        print("%d failed: %s" % (len(_failures), ", ".join(_failures)))
        sys.exit(1)
    print("all passed")
    sys.exit(0)


def workdir():
    d = tempfile.mkdtemp(prefix="llmroute-it-")
    import shutil
    atexit.register(shutil.rmtree, d, True)
    return d
