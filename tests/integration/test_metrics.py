"""test_metrics.py -- what GET /metrics says about the paths that are not
forwarding: requests by endpoint, feedback outcomes, the remote embedder's
fetches, and the history store's refreshes and rebuilds; and under a mixed
load of forwarded requests of every outcome, with SIGHUP reloads in the
middle, that the text stays valid exposition format (promtext.py) and the
counters, gauges and token accounting say exactly what was sent.

    python3 test_metrics.py LLMROUTE FAKE_UPSTREAM

Each check sends known requests to a gateway of its own (or continues from
the previous check's, said where) and asserts the counters' exact values.
Refreshes are started by SIGHUP and by a feedback only (server.
store_refresh_ms 0), so their counts do not depend on time; the waits are
for a refresh job to end, bounded, and assert nothing about how long it
took.
"""
import collections
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
from gwtest import (Fake, Gateway, Upstream, chat, check, closed_port, finish,  # noqa
                    import_ok, read_request, request, smart_config, smart_history, wait_for,
                    workdir)
import promtext  # noqa

SEED = 30
FEEDBACK = ["recorded", "already_recorded", "bad_request", "unknown_model", "no_store",
            "embedding_failed", "store_busy", "store_replaced", "store_error",
            "internal_error", "client_closed", "key_reused"]
RESULTS = ["unchanged", "rebuilt", "reopened", "replaced", "error"]


def http_key(endpoint, status):
    return 'llmroute_http_requests_total{endpoint="%s",status="%d"}' % (endpoint, status)


def feedback_key(outcome):
    return 'llmroute_feedback_total{outcome="%s"}' % outcome


def refresh_key(call, result):
    return 'llmroute_store_refreshes_total{call="%s",result="%s"}' % (call, result)


def refreshes(m):
    return sum(m[refresh_key(c, r)] for c in ("refresh", "rebuild") for r in RESULTS)


def feedback(port, query, model="cheapo", key=None, correctness=1):
    body = {"query": query, "model": model, "output_tokens": 5}
    if correctness is not None:
        body["correctness"] = correctness
    headers = {"Idempotency-Key": key} if key else {}
    st, _, data = request(port, "POST", "/v1/feedback", json.dumps(body), headers)
    return st, json.loads(data)


def config(store):
    c = smart_config(store)
    c["server"] = {"store_refresh_ms": 0}
    return c


def seeded_store(bin_, wd, name):
    store = os.path.join(wd, name + ".db")
    hist = os.path.join(wd, name + ".jsonl")
    smart_history(hist, SEED, name)
    import_ok(bin_, store, hist)
    return store


def store_checks(bin_):
    wd = workdir()
    store = seeded_store(bin_, wd, "history")
    gw = Gateway(bin_, wd, config(store))

    def endpoints_are_told_apart():
        st, _, _ = request(gw.port, "GET", "/v1/models")
        assert st == 200, st
        st, _, body = request(gw.port, "POST", "/v1/route",
                              json.dumps({"queries": [{"query": "What is 1 plus 2?"}]}))
        assert st == 200, (st, body)
        st, _, _ = request(gw.port, "PUT", "/v1/route", "{}")
        assert st == 405, st
        st, _, _ = request(gw.port, "GET", "/no/such/path")
        assert st == 404, st
        st, _, _ = request(gw.port, "GET", "/another/unknown")
        assert st == 404, st
        st, _, j, _ = chat(gw.port, {"model": "cheapo",
                                     "messages": [{"role": "user", "content": "hi"}]})
        assert st == 200, (st, j)
        m = gw.metrics()
        assert m[http_key("/v1/models", 200)] == 1, m
        assert m[http_key("/v1/route", 200)] == 1, m
        assert m[http_key("/v1/route", 405)] == 1, m
        assert m[http_key("other", 404)] == 2, m
        assert m[http_key("/v1/chat/completions", 200)] == 1, m
        # Scrapes are not counted, and no request's own path names a series.
        assert not [k for k in m if "/metrics" in k or "/no/" in k or "/another" in k], \
            [k for k in m if "/metrics" in k or "/no/" in k or "/another" in k]
        # The series that was there stays as it was: these answers count in
        # it with no route and no model.
        assert m['llmroute_requests_total{route="",model="",status="200"}'] == 2, m
    check("llmroute_http_requests_total tells /v1/models, /v1/route, chat and unknown paths "
          "(one 'other' series) apart; llmroute_requests_total is unchanged",
          endpoints_are_told_apart)

    def feedback_outcomes_are_counted():
        st, j = feedback(gw.port, "What is 40 plus 2? (metrics)", key="metrics-1")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        st, j = feedback(gw.port, "What is 40 plus 3? (metrics)")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        st, j = feedback(gw.port, "What is 40 plus 2? (metrics)", key="metrics-1")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        st, j = feedback(gw.port, "What is 40 plus 4? (metrics)", correctness=None)
        assert st == 400, (st, j)
        st, j = feedback(gw.port, "What is 40 plus 5? (metrics)", model="nobody")
        assert st == 404, (st, j)
        m = gw.metrics()
        want = {"recorded": 2, "already_recorded": 1, "bad_request": 1, "unknown_model": 1}
        for outcome in FEEDBACK:
            assert m[feedback_key(outcome)] == want.get(outcome, 0), (outcome, m)
        assert m[http_key("/v1/feedback", 200)] == 3, m
        assert m[http_key("/v1/feedback", 400)] == 1, m
        assert m[http_key("/v1/feedback", 404)] == 1, m
        # Two records appended since the open built the copy; no refresh yet.
        assert m["llmroute_store_appended_since_build"] == 2, m
        assert refreshes(m) == 0, m
        assert "llmroute_store_build_seconds" not in m, m
    check("llmroute_feedback_total: 2 recorded, 1 already_recorded, 1 bad_request, "
          "1 unknown_model; llmroute_store_appended_since_build 2",
          feedback_outcomes_are_counted)

    def sighup_rebuild_is_counted():
        # Continues from the feedback above: SIGHUP converges, rebuilding the
        # copy the two appends moved away from a fresh open's.
        gw.signal(signal.SIGHUP)
        wait_for(lambda: refreshes(gw.metrics()) == 1, 20, "the SIGHUP's rebuild to end")
        m = gw.metrics()
        assert m[refresh_key("rebuild", "rebuilt")] == 1, m
        assert m["llmroute_store_appended_since_build"] == 0, m
        built = m["llmroute_store_build_seconds"]
        assert built > 0, m
        # Nothing appended since: the next SIGHUP's rebuild changes nothing,
        # and the gauge keeps the last build's time.
        gw.signal(signal.SIGHUP)
        wait_for(lambda: refreshes(gw.metrics()) == 2, 20, "the second SIGHUP's rebuild to end")
        m = gw.metrics()
        assert m[refresh_key("rebuild", "rebuilt")] == 1, m
        assert m[refresh_key("rebuild", "unchanged")] == 1, m
        assert m["llmroute_store_build_seconds"] == built, m
        assert m['llmroute_config_reloads_total{result="ok"}'] == 2, m
    check("SIGHUP's rebuild is counted (rebuilt, then unchanged); the appended-records gauge "
          "drops to 0 and the last build's seconds are kept", sighup_rebuild_is_counted)

    def replaced_store_is_counted():
        # Continues: another store moved to the gateway's path. The feedback
        # that notices is 503 store_replaced, and the refresh it starts
        # opens the new file.
        new = seeded_store(bin_, wd, "history-new")
        os.rename(new, store)
        st, j = feedback(gw.port, "What is 41 plus 2? (metrics)")
        assert st == 503 and j["error"]["code"] == "store_replaced", (st, j)
        wait_for(lambda: refreshes(gw.metrics()) == 3, 20, "the refresh to open the new file")
        m = gw.metrics()
        assert m[feedback_key("store_replaced")] == 1, m
        assert m[http_key("/v1/feedback", 503)] == 1, m
        # A periodic-style refresh, or a converging one if 30 s have passed
        # since the first rebuild: either way the new file is reopened.
        assert m[refresh_key("refresh", "reopened")] + m[refresh_key("rebuild", "reopened")] \
            == 1, m
        st, j = feedback(gw.port, "What is 41 plus 3? (metrics)")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        m = gw.metrics()
        assert m[feedback_key("recorded")] == 3, m
        assert m["llmroute_store_appended_since_build"] == 1, m
    check("a replaced store file: feedback store_replaced 1, the refresh that reopens it "
          "counted as reopened", replaced_store_is_counted)

    def no_store_is_counted():
        cfg = smart_config(None)
        cfg["router"] = {"strategy": "sequential"}
        cfg["routes"] = []
        g = Gateway(bin_, wd, cfg, name="nostore")
        st, j = feedback(g.port, "What is 1 plus 1?")
        assert st == 501, (st, j)
        m = g.metrics()
        assert m[feedback_key("no_store")] == 1, m
        assert m[http_key("/v1/feedback", 501)] == 1, m
        # No store: no gauge of its appends.
        assert "llmroute_store_appended_since_build" not in m, m
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("feedback to a gateway without a store counts no_store", no_store_is_counted)


def import_with(bin_, wd, cfg, store, hist):
    path = os.path.join(wd, "import.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([bin_, "import", "--config", path, "--store", store, hist],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def embedder_checks(bin_, fake_bin):
    wd = workdir()
    fake = Fake(fake_bin, wd)
    store = os.path.join(wd, "dense.db")
    hist = os.path.join(wd, "history.jsonl")
    smart_history(hist, SEED, "dense")
    cfg = config(store)
    cfg["router"]["embedding"] = {"base_url": fake.base_url, "model": "embed-small"}
    import_with(bin_, wd, cfg, store, hist)

    def embedder_fetches_are_counted():
        gw = Gateway(bin_, wd, cfg, name="dense")
        m = gw.metrics()
        assert m['llmroute_embedder_fetches_total{class="ok"}'] == 0, m
        assert m["llmroute_embedder_fetch_seconds_count"] == 0, m
        st, j = feedback(gw.port, "What is 7 plus 7? (dense)")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        fake.scenario("every=1;fail_status=500;message=embedder%20broke")
        st, j = feedback(gw.port, "What is 7 plus 8? (dense)")
        assert st == 502 and j["error"]["code"] == "embedding_failed", (st, j)
        m = gw.metrics()
        assert m['llmroute_embedder_fetches_total{class="ok"}'] == 1, m
        assert m['llmroute_embedder_fetches_total{class="server_error"}'] == 1, m
        assert m["llmroute_embedder_fetch_seconds_count"] == 2, m
        assert m['llmroute_embedder_fetch_seconds_bucket{le="+Inf"}'] == 2, m
        assert m[feedback_key("recorded")] == 1, m
        assert m[feedback_key("embedding_failed")] == 1, m
        assert m[http_key("/v1/feedback", 502)] == 1, m
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("embedder fetches by class: 1 ok, 1 server_error (a 500), both in the fetch "
          "histogram; feedback counts embedding_failed", embedder_fetches_are_counted)

    def embedder_down_is_counted():
        down = json.loads(json.dumps(cfg))
        down["router"]["embedding"]["base_url"] = "http://127.0.0.1:%d/v1" % closed_port()
        gw = Gateway(bin_, wd, down, name="dense-down")
        st, j = feedback(gw.port, "What is 1 plus 4? (down)")
        assert st == 502, (st, j)
        st, _, body = request(gw.port, "POST", "/v1/route", json.dumps(
            {"queries": [{"query": "What is 1 plus 4?"}], "strategy": "smart"}))
        assert st == 502, (st, body)
        m = gw.metrics()
        assert m['llmroute_embedder_fetches_total{class="connect_refused"}'] == 2, m
        assert m['llmroute_embedder_fetches_total{class="ok"}'] == 0, m
        assert m["llmroute_embedder_fetch_seconds_count"] == 2, m
        assert m[feedback_key("embedding_failed")] == 1, m
        assert m[http_key("/v1/route", 502)] == 1, m
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("an embedder that is down: its fetches (feedback's and /v1/route's) counted "
          "connect_refused", embedder_down_is_counted)

    def cancelled_fetch_is_counted():
        gw = Gateway(bin_, wd, cfg, name="dense-cancel")
        fake.scenario("hang")  # the embedder reads the request and never answers
        seen = len(fake.logged())
        body = json.dumps({"query": "What is 9 plus 9? (cancelled)", "model": "cheapo",
                           "correctness": 1, "output_tokens": 5}).encode()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        wait_for(lambda: len(fake.logged()) > seen, what="the embedder fetch to start")
        s.close()  # the client goes away while its vector is being fetched
        key = 'llmroute_embedder_fetches_total{class="cancelled"}'
        wait_for(lambda: gw.metrics().get(key) == 1, what="the cancelled fetch counted")
        m = gw.metrics()
        assert m["llmroute_embedder_fetch_seconds_count"] == 0, m
        assert m['llmroute_embedder_fetches_total{class="ok"}'] == 0, m
        assert m[feedback_key("client_closed")] == 1, m
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("an embedder fetch whose client went away is counted class cancelled, outside "
          "the fetch histogram", cancelled_fetch_is_counted)


# ==== Under load: the exposition's format, and counters that add up ====

# Names a label value must carry whole: a quote, a backslash and non-ASCII
# text; and two routes as long as a file allows (256 bytes, as a model's
# name) that differ only in their last byte, after an even number of bytes
# of two-byte characters and one ASCII byte.
WEIRD = 'we"ird\\mödel✓'
LONG = "é" * 127 + "x"


def scrape(port):
    """The text of GET /metrics, checked: (flat {(name, labels): value}, its families)."""
    st, h, body = request(port, "GET", "/metrics")
    assert st == 200, st
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h
    fams, errs = promtext.check(body)
    assert not errs, errs[:10]
    return promtext.flat(fams), fams


def series(flat, name):
    """{labels dict as a sorted tuple: value} of one series name."""
    return {k[1]: v for k, v in flat.items() if k[0] == name}


def lab(**kw):
    return tuple(sorted(kw.items()))


def post(port, path, payload=None, raw=None):
    """One POST on a fresh connection, its body read whole: (status, body)."""
    data = raw if raw is not None else json.dumps(payload).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def load_checks(bin_, fake_bin):
    wd = workdir()
    fakes = {
        "okm": Fake(fake_bin, wd, "f_okm", ["--scenario", "ok;chunks=4"]),
        "weird": Fake(fake_bin, wd, "f_weird", ["--scenario", "ok;chunks=2"]),
        "e500": Fake(fake_bin, wd, "f_500", ["--scenario", "status=500"]),
        "e429": Fake(fake_bin, wd, "f_429", ["--scenario", "status=429"]),
        "cut": Fake(fake_bin, wd, "f_cut", ["--scenario", "cut_after=3"]),
        "stall": Fake(fake_bin, wd, "f_stall", ["--scenario", "stall_after=3"]),
        "hang": Fake(fake_bin, wd, "f_hang", ["--scenario", "hang"]),
        "gone": Fake(fake_bin, wd, "f_gone", ["--scenario", "hang"]),
    }

    def model(name, fake, **kw):
        m = {"name": name, "backend": "vllm", "base_url": fakes[fake].base_url,
             "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6}
        m.update(kw)
        return m

    cfg = {
        "models": [model("okm", "okm"), model(WEIRD, "weird"), model("e500", "e500"),
                   model("e429", "e429"), model("cut", "cut"),
                   model("stall", "stall", timeouts={"idle_ms": 300}),
                   model("hang", "hang", timeouts={"head_ms": 300}), model("gone", "gone")],
        "router": {"strategy": "sequential"},
        "routes": [{"name": "r-seq", "strategy": "sequential", "models": ["okm", WEIRD]}],
        # Every line logged, one attempt a request and no breaker: each
        # request's outcome is its upstream's.
        "server": {"log_refused_per_s": 0, "max_body_bytes": 65536, "store_refresh_ms": 0,
                   "resilience": {"retry": {"max_attempts": 1},
                                  "breaker": {"consecutive_failures": 0, "failure_rate": 0}}},
    }
    gw = Gateway(bin_, wd, cfg, name="load")
    msgs = [{"role": "user", "content": "hello there"}]

    def chat_to(model_, **kw):
        p = {"model": model_, "messages": msgs}
        p.update(kw)
        return post(gw.port, "/v1/chat/completions", p)

    usage = {"stream": True, "stream_options": {"include_usage": True}}
    # kind: (times, request, (route, model, status) it must be counted as)
    plan = {
        "ok": (16, lambda: chat_to("okm"), ("", "okm", 200)),
        "ok_stream_usage": (16, lambda: chat_to("okm", **usage), ("", "okm", 200)),
        "ok_stream": (12, lambda: chat_to("okm", stream=True), ("", "okm", 200)),
        "weird": (8, lambda: chat_to(WEIRD), ("", WEIRD, 200)),
        "route": (10, lambda: chat_to("r-seq"), ("r-seq", None, 200)),
        "e500": (8, lambda: chat_to("e500"), ("", "e500", 500)),
        "e429": (8, lambda: chat_to("e429"), ("", "e429", 429)),
        # A stream cut after its first content: the client had its head (200).
        "cut_stream": (6, lambda: chat_to("cut", stream=True), ("", "cut", 200)),
        "cut": (4, lambda: chat_to("cut"), ("", "cut", 502)),
        "stall_stream": (4, lambda: chat_to("stall", stream=True), ("", "stall", 200)),
        "hang": (4, lambda: chat_to("hang"), ("", "hang", 504)),
        "bad_json": (6, lambda: post(gw.port, "/v1/chat/completions", raw=b"{not json"),
                     ("", "", 400)),
        "unknown_model": (6, lambda: chat_to("no-such-model"), ("", "", 404)),
        "too_large": (3, lambda: post(gw.port, "/v1/chat/completions",
                                      raw=b'{"x": "' + b"a" * 70000 + b'"}'), ("", "", 413)),
        "route_api": (4, lambda: post(gw.port, "/v1/route",
                                      {"queries": [{"query": "hi"}], "models": ["okm"]}),
                      ("", "", 200)),
        "feedback": (4, lambda: post(gw.port, "/v1/feedback",
                                     {"query": "hi", "model": "okm", "correctness": 1,
                                      "output_tokens": 3}), ("", "", 501)),
    }
    errors = []
    lock = threading.Lock()

    def worker(items):
        for kind in items:
            want = plan[kind][2]
            try:
                st, body = plan[kind][1]()
            except Exception as ex:  # noqa: a failure is reported, not raised in a thread
                with lock:
                    errors.append((kind, repr(ex)))
                continue
            if st != want[2]:
                with lock:
                    errors.append((kind, st, body[:200]))

    # Clients that go away while their upstream attempt runs: each closes once
    # the hanging upstream (its own) has its request, so the attempt is under way.
    def leave_early(n):
        p = json.dumps({"model": "gone", "stream": True, "messages": msgs}).encode()
        for _ in range(n):
            seen = len(fakes["gone"].logged())
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(p), p))
            wait_for(lambda: len(fakes["gone"].logged()) > seen, 20, "the upstream request")
            s.close()

    def load_is_counted_exactly():
        work = [k for k, v in plan.items() for _ in range(v[0])]
        work = [work[i] for i in sorted(range(len(work)), key=lambda i: (i * 7919) % 211)]
        threads = [threading.Thread(target=worker, args=(work[t::8],)) for t in range(8)]
        leavers = threading.Thread(target=leave_early, args=(4,))
        for t in threads + [leavers]:
            t.start()
        # Reloads and scrapes in the middle: neither resets a counter, and
        # every scrape is valid.
        for _ in range(3):
            time.sleep(0.05)
            gw.signal(signal.SIGHUP)
            scrape(gw.port)
        for t in threads + [leavers]:
            t.join(120)
        assert not errors, errors[:5]
        wait_for(lambda: len([l for l in gw.log_lines() if "status" in l])
                 == sum(v[0] for v in plan.values()) + 4, 20, "every request's log line")
        wait_for(lambda: gw.metrics().get('llmroute_config_reloads_total{result="ok"}') == 3,
                 20, "the three reloads")
        m, _ = scrape(gw.port)

        want = collections.Counter()
        for kind, (n, _, (route, mod, st)) in plan.items():
            want[(route, mod, st)] += n
        want[("", "gone", 499)] += 4
        rt = {(dict(k)["route"], dict(k)["model"], int(dict(k)["status"])): v
              for k, v in series(m, "llmroute_requests_total").items()}
        # The route's sequential router alternates its two models (and goes
        # on where it was across reloads): only their sum is known.
        routed = want.pop(("r-seq", None, 200))
        assert rt.pop(("r-seq", "okm", 200), 0) + rt.pop(("r-seq", WEIRD, 200), 0) == routed, rt
        assert rt == dict(want), (sorted(rt.items()), sorted(want.items()))
        # Every answer counted in one series is counted in the other, and
        # each was logged once with what it was counted as.
        http_ = series(m, "llmroute_http_requests_total")
        assert sum(http_.values()) == sum(plan[k][0] for k in plan) + 4, http_
        assert http_[lab(endpoint="/v1/chat/completions", status="499")] == 4, http_
        logged = collections.Counter((l["route"], l["model"], l["status"])
                                     for l in gw.log_lines() if "status" in l)
        rt = {(dict(k)["route"], dict(k)["model"], int(dict(k)["status"])): v
              for k, v in series(m, "llmroute_requests_total").items()}
        assert rt == dict(logged), (sorted(rt.items()), sorted(logged.items()))

        # Attempts by class: one a forwarded request, each in its class;
        # those whose client went away are counted as client_closed.
        att = {(dict(k)["model"], dict(k)["class"]): v
               for k, v in series(m, "llmroute_upstream_attempts_total").items() if v}
        r_okm = sum(v for (r, mo, _), v in logged.items() if mo == "okm" and r == "r-seq")
        r_weird = sum(v for (r, mo, _), v in logged.items() if mo == WEIRD and r == "r-seq")
        want_att = {("okm", "ok"): 16 + 16 + 12 + r_okm, (WEIRD, "ok"): 8 + r_weird,
                    ("e500", "server_error"): 8, ("e429", "rate_limited_no_retry_after"): 8,
                    ("cut", "stream_cut"): 10, ("stall", "stream_stall"): 4,
                    ("hang", "timeout"): 4, ("gone", "client_closed"): 4}
        assert att == want_att, (sorted(att.items()), sorted(want_att.items()))
        forwarded = sum(want_att.values())
        assert m[("llmroute_request_attempts_count", ())] == forwarded, m
        assert m[("llmroute_request_attempts_sum", ())] == forwarded, m
        assert m[("llmroute_requests_by_attempts_total", lab(attempts="1"))] == forwarded, m

        # Nothing is left in flight, waiting or open but this scrape's connection.
        for k, v in series(m, "llmroute_in_flight").items():
            assert v == 0, (k, v)
        assert m[("llmroute_queue_waiting", ())] == 0, m
        assert m[("llmroute_connections_open", ())] == 1, m
        st, _, body = request(gw.port, "GET", "/health")
        h = json.loads(body)
        assert st == 200 and h["status"] == "ok" and h["in_flight"] == 0, h
        assert all(u["in_flight"] == 0 for u in h["upstreams"].values()), h

        # Tokens: the fake reports prompt_tokens = its request body's bytes /
        # 4 + 1 and completion_tokens = its chunks, for each answer that
        # carried usage (not a stream without include_usage, nor one cut or
        # stalled before its usage chunk, which are unmetered).
        def fake_tokens(f, chunks):
            tin = tout = 0
            for r in fakes[f].logged():
                b = json.loads(r["body"])
                if b.get("stream") and not b.get("stream_options"):
                    continue
                tin += len(r["body"].encode()) // 4 + 1
                tout += chunks
            return tin, tout
        for name, f, chunks in (("okm", "okm", 4), (WEIRD, "weird", 2)):
            tin, tout = fake_tokens(f, chunks)
            assert m[("llmroute_tokens_total", lab(model=name, direction="in"))] == tin, m
            assert m[("llmroute_tokens_total", lab(model=name, direction="out"))] == tout, m
            cost = m[("llmroute_cost_total", lab(model=name))]
            assert abs(cost - (tin * 1e-6 + tout * 2e-6)) < 1e-9, (name, cost, tin, tout)
        unmetered = {dict(k)["model"]: v
                     for k, v in series(m, "llmroute_unmetered_answers_total").items() if v}
        assert unmetered == {"okm": 12, "cut": 6, "stall": 4}, unmetered
        for name in ("e500", "e429", "hang"):
            assert m[("llmroute_tokens_total", lab(model=name, direction="in"))] == 0, m
    check("a mixed load with SIGHUP reloads: every scrape valid exposition text, and "
          "requests, attempts by class (client_closed for clients gone), tokens, cost and "
          "unmetered answers exactly as sent; nothing left in flight", load_is_counted_exactly)

    def long_names_stay_whole():
        # The weird model of the load above, and two long routes: two
        # series, each with its name whole.
        m, _ = scrape(gw.port)
        assert WEIRD in {dict(k)["model"] for k in series(m, "llmroute_in_flight")}, m
        lc = {"models": [{"name": "m", "backend": "mock", "mock": {"content": "hi"}}],
              "routes": [{"name": LONG + "A", "strategy": "sequential", "models": ["m"]},
                         {"name": LONG + "B", "strategy": "sequential", "models": ["m"]}]}
        g = Gateway(bin_, wd, lc, name="long")
        for route, n in ((LONG + "A", 1), (LONG + "B", 2)):
            for _ in range(n):
                st, body = post(g.port, "/v1/chat/completions", {"model": route,
                                                                 "messages": msgs})
                assert st == 200, (st, body)
        m, _ = scrape(g.port)
        rt = {dict(k)["route"]: v for k, v in series(m, "llmroute_requests_total").items()}
        assert rt == {LONG + "A": 1, LONG + "B": 2}, [(r[-8:], v) for r, v in rt.items()]
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("label values are escaped and never cut short: a quote, a backslash, non-ASCII "
          "text and two 256-byte route names that differ in their last byte",
          long_names_stay_whole)

    def overhead_leaves_out_every_attempt():
        # A request whose first attempt times out after 400 ms and falls
        # back: that time was spent waiting on an upstream, so it is not the
        # gateway's overhead. Overhead = duration - every attempt's time, so
        # at most duration - 0.4 s; the answering attempt's alone is not.
        oc = {"models": [model("slow", "hang", timeouts={"head_ms": 400}),
                         model("fast", "okm")],
              "routes": [{"name": "r", "strategy": "sequential", "models": ["slow", "fast"]}]}
        g = Gateway(bin_, wd, oc, name="overhead")
        st, body = post(g.port, "/v1/chat/completions", {"model": "r", "messages": msgs})
        assert st == 200, (st, body)
        m, _ = scrape(g.port)
        assert m[("llmroute_upstream_attempts_total",
                  lab(model="slow", **{"class": "timeout"}))] == 1, m
        duration = m[("llmroute_request_duration_seconds_sum", ())]
        overhead = m[("llmroute_gateway_overhead_seconds_sum", ())]
        assert m[("llmroute_gateway_overhead_seconds_count", ())] == 1, m
        assert duration >= 0.4 and overhead < duration - 0.3, (duration, overhead)
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("llmroute_gateway_overhead_seconds leaves out the time of every upstream attempt, "
          "not only the one that answered", overhead_leaves_out_every_attempt)

    def overhead_leaves_out_policy_waits():
        # A 429 with Retry-After: 1 is retried after that pause; and with
        # max_concurrency 1 a second request waits for the first's 600 ms.
        # Both waits are the policy's, neither the upstream's time nor the
        # gateway's work: overhead stays the small rest of each request.
        ra = Fake(fake_bin, wd, "f_ra", ["--scenario", "fail_first=1;fail_status=429;retry_after=1"])
        slow = Fake(fake_bin, wd, "f_slow600", ["--scenario", "delay_ms=600"])
        oc = {"models": [model("ra", "okm", base_url=ra.base_url),
                         model("one", "okm", base_url=slow.base_url, max_concurrency=1)]}
        g = Gateway(bin_, wd, oc, name="held")
        st, body = post(g.port, "/v1/chat/completions", {"model": "ra", "messages": msgs})
        assert st == 200, (st, body)
        m, _ = scrape(g.port)
        assert m[("llmroute_upstream_attempts_total",
                  lab(model="ra", **{"class": "rate_limited"}))] == 1, m
        duration = m[("llmroute_request_duration_seconds_sum", ())]
        overhead = m[("llmroute_gateway_overhead_seconds_sum", ())]
        assert duration >= 1.0 and overhead < 0.3, (duration, overhead)
        out = []
        ts = [threading.Thread(target=lambda: out.append(post(g.port, "/v1/chat/completions",
                                                              {"model": "one",
                                                               "messages": msgs})))
              for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [st for st, _ in out] == [200, 200], out
        m, _ = scrape(g.port)
        assert m[("llmroute_gateway_overhead_seconds_count", ())] == 3, m
        duration2 = m[("llmroute_request_duration_seconds_sum", ())] - duration
        overhead2 = m[("llmroute_gateway_overhead_seconds_sum", ())] - overhead
        # 0.6 s for the first, up to 1.2 s for the one that waited for it:
        # less the time between the two threads' sends, so the bound leaves
        # room for it while still needing most of the wait (without it the
        # sum would be 1.2 s).
        assert duration2 >= 1.5 and overhead2 < 0.3, (duration2, overhead2)
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("llmroute_gateway_overhead_seconds leaves out a retry's Retry-After pause and the "
          "wait for room under max_concurrency", overhead_leaves_out_policy_waits)

    def failed_attempts_usage_is_not_counted():
        # vLLM with continuous_usage_stats puts usage in its role chunk,
        # which the gateway holds back; this stream is then cut, and the
        # request falls back to a model whose stream (no include_usage) has
        # none. That answer is unmetered: the first attempt's usage is not
        # counted as the second model's.
        class UsageThenCut(Upstream):
            def serve(self, c):
                read_request(c)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          b"Connection: close\r\n\r\n"
                          b'data: {"id":"x","object":"chat.completion.chunk","choices":'
                          b'[{"index":0,"delta":{"role":"assistant","content":""}}],'
                          b'"usage":{"prompt_tokens":1000,"completion_tokens":0,'
                          b'"total_tokens":1000}}\n\n')
                c.close()
        up = UsageThenCut().start()
        fb = {"models": [{"name": "first", "backend": "vllm", "base_url": up.base_url,
                          "cost_per_input_token": 1, "cost_per_output_token": 1},
                         {"name": "second", "backend": "vllm",
                          "base_url": fakes["okm"].base_url,
                          "cost_per_input_token": 1, "cost_per_output_token": 1}],
              "routes": [{"name": "r", "strategy": "sequential",
                          "models": ["first", "second"]}]}
        g = Gateway(bin_, wd, fb, name="fallback")
        st, body = post(g.port, "/v1/chat/completions",
                        {"model": "r", "stream": True, "messages": msgs})
        assert st == 200 and body.endswith(b"data: [DONE]\n\n"), (st, body[-200:])
        m, _ = scrape(g.port)
        cut = lab(model="first", **{"class": "stream_cut"})
        assert m[("llmroute_upstream_attempts_total", cut)] == 1, m
        assert m[("llmroute_unmetered_answers_total", lab(model="second"))] == 1, m
        assert m[("llmroute_tokens_total", lab(model="second", direction="in"))] == 0, m
        assert m[("llmroute_cost_total", lab(model="second"))] == 0, m
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("usage read from a failed attempt's stream is not counted for the model that "
          "answered after the fallback: that answer is unmetered",
          failed_attempts_usage_is_not_counted)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: test_metrics.py LLMROUTE FAKE_UPSTREAM")
    store_checks(sys.argv[1])
    embedder_checks(sys.argv[1], sys.argv[2])
    load_checks(sys.argv[1], sys.argv[2])
    finish()
