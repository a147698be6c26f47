"""test_metrics.py -- what GET /metrics says about the paths that are not
forwarding: requests by endpoint, feedback outcomes, the remote embedder's
fetches, and the history store's refreshes and rebuilds.

    python3 test_metrics.py LLMROUTE FAKE_UPSTREAM

Each check sends known requests to a gateway of its own (or continues from
the previous check's, said where) and asserts the counters' exact values.
Refreshes are started by SIGHUP and by a feedback only (server.
store_refresh_ms 0), so their counts do not depend on time; the waits are
for a refresh job to end, bounded, and assert nothing about how long it
took.
"""
import json
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (Fake, Gateway, chat, check, closed_port, finish, import_ok,  # noqa
                    request, smart_config, smart_history, wait_for, workdir)

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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: test_metrics.py LLMROUTE FAKE_UPSTREAM")
    store_checks(sys.argv[1])
    embedder_checks(sys.argv[1], sys.argv[2])
    finish()
