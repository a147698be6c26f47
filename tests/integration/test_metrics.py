"""test_metrics.py -- what GET /metrics says about the paths that are not
forwarding: requests by endpoint, and feedback outcomes.

    python3 test_metrics.py LLMROUTE FAKE_UPSTREAM

Each check sends known requests to a gateway of its own (or continues from
the previous check's) and asserts the counters' exact values. No periodic
refresh runs (server.store_refresh_ms 0).
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (Gateway, chat, check, finish, import_ok, request, smart_config,  # noqa
                    smart_history, workdir)

SEED = 30
FEEDBACK = ["recorded", "already_recorded", "bad_request", "unknown_model", "no_store",
            "embedding_failed", "store_busy", "store_replaced", "store_error",
            "internal_error", "client_closed"]


def http_key(endpoint, status):
    return 'llmroute_http_requests_total{endpoint="%s",status="%d"}' % (endpoint, status)


def feedback_key(outcome):
    return 'llmroute_feedback_total{outcome="%s"}' % outcome


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
    check("llmroute_feedback_total: 2 recorded, 1 already_recorded, 1 bad_request, "
          "1 unknown_model", feedback_outcomes_are_counted)

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
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("feedback to a gateway without a store counts no_store", no_store_is_counted)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: test_metrics.py LLMROUTE FAKE_UPSTREAM")
    store_checks(sys.argv[1])
    finish()
