"""test_log_limit.py -- the log lines of refused requests (answers 400 to
498) are rate-limited (server.log_refused_per_s), with a log_suppressed
event that counts the lines left out, so a client sending bad requests as
fast as it can does not flood the log.

    python3 test_log_limit.py LLMROUTE

Each check starts its own gateway (mock models, no store), sends a burst
of requests to an unknown path (404 unknown_url) on one keep-alive
connection, stops the gateway (SIGTERM writes a last summary) and counts
its log: the lines written and the summaries' counts add up to the burst
exactly, and the lines written stay within the bucket (its burst, plus
the rate times the burst's duration).
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import Gateway, check, finish, request, wait_for, workdir  # noqa


def config(server=None):
    c = {"models": [{"name": "m", "backend": "mock", "mock": {"content": "hi"}}]}
    if server is not None:
        c["server"] = server
    return c


def burst(port, n, prefix):
    """n GETs of unknown paths on one connection; the seconds it took."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.monotonic()
    for i in range(n):
        conn.request("GET", "/%s/%d" % (prefix, i))
        r = conn.getresponse()
        r.read()
        assert r.status == 404, r.status
    elapsed = time.monotonic() - t0
    conn.close()
    return elapsed


def counted(g, prefix):
    """(lines written for the burst's requests, the summaries' total, the
    summaries)."""
    lines = g.log_lines()
    written = [l for l in lines if str(l.get("path", "")).startswith("/%s/" % prefix)]
    assert all(l["status"] == 404 and l["error"] == "unknown_url" for l in written), written[:3]
    summaries = [l for l in lines if l.get("event") == "log_suppressed"]
    for s in summaries:
        assert "%d similar lines suppressed" % s["suppressed"] in s["message"], s
        assert s["suppressed"] > 0, s
    return len(written), sum(s["suppressed"] for s in summaries), summaries


def main(bin_):
    wd = workdir()

    def burst_of_bad_requests_is_bounded():
        n = 1000
        g = Gateway(bin_, wd, config(), name="gw_default")
        elapsed = burst(g.port, n, "nope")
        # Other lines are not held back, with the bucket empty.
        st, _, _ = request(g.port, "GET", "/v1/models")
        assert st == 200, st
        m = g.metrics()
        assert m['llmroute_http_requests_total{endpoint="other",status="404"}'] == n, m
        # The summary comes a second after the first line left out, unasked.
        wait_for(lambda: g.events("log_suppressed"), timeout=10, what="a log_suppressed event")
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
        written, suppressed, summaries = counted(g, "nope")
        # The default: 20 a second, bursts of 200.
        assert written + suppressed == n, (written, suppressed)
        assert written <= 200 + 20 * elapsed + 1, (written, elapsed)
        assert suppressed > 0 and len(summaries) <= elapsed + 3, (summaries, elapsed)
        assert "server.log_refused_per_s (20 a second, bursts of 200)" in \
            summaries[0]["message"], summaries[0]
        assert [l for l in g.log_lines() if l.get("path") == "/v1/models"], "no 200 line"
        # The summaries come before the stopped event.
        events = [l.get("event") for l in g.log_lines() if l.get("event")]
        assert events.index("stopped") > max(i for i, e in enumerate(events)
                                             if e == "log_suppressed"), events
    check("a burst of 1000 bad requests (404) writes at most the bucket's lines (200, plus 20 "
          "a second), and the log_suppressed summaries count the rest exactly",
          burst_of_bad_requests_is_bounded)

    def rate_is_set_in_the_config():
        n = 300
        g = Gateway(bin_, wd, config({"log_refused_per_s": 2}), name="gw_two")
        elapsed = burst(g.port, n, "slow")
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
        written, suppressed, summaries = counted(g, "slow")
        assert written + suppressed == n, (written, suppressed)
        assert written <= 20 + 2 * elapsed + 1, (written, elapsed)
        assert "(2 a second, bursts of 20)" in summaries[0]["message"], summaries[0]
        # 0: no limit, every line written, no summary.
        g = Gateway(bin_, wd, config({"log_refused_per_s": 0}), name="gw_unlimited")
        burst(g.port, n, "free")
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
        assert counted(g, "free")[:2] == (n, 0), counted(g, "free")
    check("server.log_refused_per_s sets the rate (bursts of 10 times it); 0 logs every line",
          rate_is_set_in_the_config)

    def bad_rate_is_a_config_error():
        for i, bad in enumerate([-1, 1000001, "20", 1.5, True]):
            path = os.path.join(wd, "bad_rate%d.json" % i)
            with open(path, "w") as f:
                json.dump(config({"log_refused_per_s": bad}), f)
            r = subprocess.run([bin_, "serve", "--config", path, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.log_refused_per_s: expected an integer from 0 to 1000000" \
                in r.stderr, (bad, r.stderr)
    check("server.log_refused_per_s that is not an integer from 0 to 1000000 is a config "
          "error naming the key (exit 2)", bad_rate_is_a_config_error)

    finish()


if __name__ == "__main__":
    main(sys.argv[1])
