"""test_store_refresh.py -- a running gateway reads records another process
imports into its history store: every server.store_refresh_ms, and on
SIGHUP.

    python3 test_store_refresh.py LLMROUTE

The store starts with arithmetic records only (both models right), so a
translation query routes to the cheap model. `llmroute import` then adds
translation records on which only 'smarty' is right, from another process.
Before the refresh existed the gateway went on routing (and counting, in
/health) on its old copy until its own next write or a restart.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (Gateway, check, finish, history_records, import_ok, request,  # noqa
                    smart_config, smart_history, wait_for, workdir)

SEED = 20
IMPORTED = 12
QUERY = "Translate the poem about autumn leaves into french"


def routed_model(gw):
    st, _, body = request(gw.port, "POST", "/v1/route", json.dumps(
        {"queries": [{"query": QUERY}], "strategy": "smart", "models": ["cheapo", "smarty"]}))
    j = json.loads(body)
    assert st == 200, (st, j)
    return j["assignments"][0]["model"]


def events(gw, name):
    return [l for l in gw.log_lines() if l.get("event") == name]


def config(store, refresh_ms):
    c = smart_config(store)
    if refresh_ms is not None:
        c["server"] = {"store_refresh_ms": refresh_ms}
    return c


def seeded_store(bin_, wd, name):
    store = os.path.join(wd, name + ".db")
    seed = os.path.join(wd, name + "-seed.jsonl")
    smart_history(seed, SEED, name, kinds=("arithmetic",))
    import_ok(bin_, store, seed)
    return store


def more_records(wd, name):
    path = os.path.join(wd, name + "-more.jsonl")
    smart_history(path, IMPORTED, name, kinds=("translation",))
    return path


def gw_failed_refreshes(gw):
    """The refreshes and rebuilds that failed, as /metrics counts them."""
    return sum(v for k, v in gw.metrics().items()
               if k.startswith("llmroute_store_refreshes_total{") and 'result="error"' in k)


def gateway_prediction(gw, q):
    """The gateway's choice between cheapo and smarty and its predicted quality."""
    st, _, body = request(gw.port, "POST", "/v1/route", json.dumps(
        {"queries": [{"query": q}], "strategy": "smart", "models": ["cheapo", "smarty"]}))
    j = json.loads(body)
    assert st == 200, (st, j)
    return j["assignments"][0]["model"], j["assignments"][0]["predicted_quality"]


def main(bin_):
    wd = workdir()

    def fresh_prediction(cfg, store, q):
        """`llmroute route`'s, a fresh open of the same file (requirement 0)."""
        r = subprocess.run([bin_, "route", "--config", cfg, "--store", store, "--strategy",
                            "smart", "--models", "cheapo,smarty", "--requirement", "0",
                            "--json", q], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout.splitlines()[0])
        return j["model"], j["predicted_quality"]

    def periodic_refresh_routes_on_imported_records():
        store = seeded_store(bin_, wd, "periodic")
        gw = Gateway(bin_, wd, config(store, 200), name="periodic")
        assert history_records(gw.port) == SEED
        assert routed_model(gw) == "cheapo"
        time.sleep(0.5)  # a few refreshes that find nothing: not logged
        assert events(gw, "store_refreshed") == [], events(gw, "store_refreshed")
        import_ok(bin_, store, more_records(wd, "periodic"))
        wait_for(lambda: history_records(gw.port) == SEED + IMPORTED, timeout=30,
                 what="/health counting the imported records")
        assert routed_model(gw) == "smarty"
        wait_for(lambda: events(gw, "store_refreshed"), timeout=30, what="a store_refreshed line")
        ev = events(gw, "store_refreshed")
        assert len(ev) == 1, ev
        assert ev[0]["store"] == store, ev
        assert ev[0]["records_before"] == SEED and ev[0]["records_after"] == SEED + IMPORTED, ev
        assert isinstance(ev[0]["ms"], (int, float)) and ev[0]["ms"] >= 0, ev
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_refresh_ms 200, records `llmroute import` adds to the gateway's "
          "store are counted and routed on within a few periods, logged once",
          periodic_refresh_routes_on_imported_records)

    def failed_refresh_keeps_routing_on_the_old_copy():
        store = seeded_store(bin_, wd, "failing")
        gw = Gateway(bin_, wd, config(store, 100), name="failing")
        # A foreign writer leaves the records table with a gap in its ids.
        db = sqlite3.connect(store, isolation_level=None)
        db.execute("INSERT INTO records(id, query, input_tokens, task) "
                   "VALUES (1000, 'a record after a gap', 3, 't')")
        wait_for(lambda: events(gw, "store_refresh_failed"), timeout=30,
                 what="a store_refresh_failed line")
        ev = events(gw, "store_refresh_failed")[0]
        assert ev["store"] == store and store in ev["message"], ev
        assert history_records(gw.port) == SEED
        assert routed_model(gw) == "cheapo"
        # The same failure at every period (100 ms) is counted, not logged
        # again: it wrote a line a period for as long as it lasted.
        wait_for(lambda: gw_failed_refreshes(gw) >= 5, timeout=30, what="refreshes failing")
        assert len(events(gw, "store_refresh_failed")) == 1, events(gw, "store_refresh_failed")
        db.execute("DELETE FROM records WHERE id = 1000")
        db.close()
        # The first refresh that succeeds says so, though it finds nothing new
        # (after the backoff of the failures alike: up to 32 periods, 3.2 s).
        wait_for(lambda: events(gw, "store_refreshed"), timeout=10, what="the recovery line")
        ok = events(gw, "store_refreshed")[0]
        assert ok["records_before"] == ok["records_after"] == SEED, ok
        import_ok(bin_, store, more_records(wd, "failing"))
        wait_for(lambda: history_records(gw.port) == SEED + IMPORTED, timeout=30,
                 what="/health counting the imported records")
        assert routed_model(gw) == "smarty"
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("a refresh that fails is logged naming the store, routing goes on with the old "
          "copy, and a later refresh reads the store once it is whole",
          failed_refresh_keeps_routing_on_the_old_copy)

    def refreshes_failing_alike_back_off():
        # A refresh that fails as the last one did waits twice as long as it
        # did, up to 32 periods: it was tried every period, 40 times in 2 s at
        # 50 ms; every failure is still counted, and logged once.
        store = seeded_store(bin_, wd, "backoff")
        gw = Gateway(bin_, wd, config(store, 50), name="backoff")
        db = sqlite3.connect(store, isolation_level=None)
        db.execute("INSERT INTO records(id, query, input_tokens, task) "
                   "VALUES (1000, 'a record after a gap', 3, 't')")
        wait_for(lambda: gw_failed_refreshes(gw) >= 1, timeout=30, what="a failed refresh")
        first = gw_failed_refreshes(gw)
        time.sleep(2.0)
        # 50, 100, 200, 400, 800 ms: at most 5 more in 2 s (40 without backoff).
        more = gw_failed_refreshes(gw) - first
        assert 1 <= more <= 8, more
        assert len(events(gw, "store_refresh_failed")) == 1, events(gw, "store_refresh_failed")
        # SIGHUP starts over at the period: its refresh, then 50, 100, 200 ms.
        before = gw_failed_refreshes(gw)
        gw.signal(signal.SIGHUP)
        wait_for(lambda: gw_failed_refreshes(gw) >= before + 4, timeout=3,
                 what="refreshes at the period again after SIGHUP")
        db.execute("DELETE FROM records WHERE id = 1000")
        db.close()
        wait_for(lambda: events(gw, "store_refreshed"), timeout=10, what="the recovery line")
        # A success starts over too: the next import is read within periods.
        import_ok(bin_, store, more_records(wd, "backoff"))
        wait_for(lambda: history_records(gw.port) == SEED + IMPORTED, timeout=3,
                 what="/health counting the imported records")
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("refreshes that keep failing alike back off (doubling up to 32 periods), each "
          "counted and logged once; SIGHUP and a success start over at the period",
          refreshes_failing_alike_back_off)

    def disabled_refresh_waits_for_sighup():
        store = seeded_store(bin_, wd, "off")
        gw = Gateway(bin_, wd, config(store, 0), name="off")
        import_ok(bin_, store, more_records(wd, "off"))
        time.sleep(1.5)
        assert history_records(gw.port) == SEED
        assert routed_model(gw) == "cheapo"
        gw.signal(signal.SIGHUP)
        wait_for(lambda: history_records(gw.port) == SEED + IMPORTED, timeout=30,
                 what="/health counting the imported records after SIGHUP")
        assert routed_model(gw) == "smarty"
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_refresh_ms 0 the gateway keeps its copy until SIGHUP, which "
          "refreshes it", disabled_refresh_waits_for_sighup)

    # 255 records: the gateway's copy is due for its first re-weighing (and
    # grouping) at 256, so the next feedback append makes it due.
    def reweigh_store(name):
        store = os.path.join(wd, name + ".db")
        seed = os.path.join(wd, name + "-seed.jsonl")
        smart_history(seed, 255, name)
        import_ok(bin_, store, seed)
        return store

    def feedback(gw, query):
        st, _, body = request(gw.port, "POST", "/v1/feedback", json.dumps(
            {"query": query, "model": "smarty", "correctness": 1, "output_tokens": 5}))
        j = json.loads(body)
        assert st == 200, (st, j)
        return j

    def health(gw):
        st, _, body = request(gw.port, "GET", "/health")
        assert st == 200, st
        return json.loads(body)

    def reweighs(gw):
        return [e for e in events(gw, "store_refreshed") if e.get("reweigh") is True]

    def feedback_leaves_the_reweigh_to_the_refresh():
        store = reweigh_store("reweigh")
        # A period far longer than the test: only SIGHUP refreshes.
        gw = Gateway(bin_, wd, config(store, 3600000), name="reweigh")
        h = health(gw)
        assert h["history_records"] == 255 and h["store_reweigh_due"] is False, h
        assert feedback(gw, "What is 1000 plus 1003? (reweigh)")["records"] == 256
        # Answered, and the copy not yet re-weighed: still due, no refresh ran.
        h = health(gw)
        assert h["history_records"] == 256 and h["store_reweigh_due"] is True, h
        assert events(gw, "store_refreshed") == [], events(gw, "store_refreshed")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: reweighs(gw), timeout=10, what="a store_refreshed line with reweigh")
        ev = events(gw, "store_refreshed")
        assert len(ev) == 1, ev
        assert ev[0]["records_before"] == 256 and ev[0]["records_after"] == 256, ev
        assert health(gw)["store_reweigh_due"] is False
        assert routed_model(gw) in ("cheapo", "smarty")
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("the feedback append that makes the store's re-weighing due answers without "
          "running it; /health says it is due, and the next refresh runs it, logged with "
          "\"reweigh\":true", feedback_leaves_the_reweigh_to_the_refresh)

    def reweigh_without_periodic_refresh():
        store = reweigh_store("reweigh-off")
        gw = Gateway(bin_, wd, config(store, 0), name="reweigh-off")
        assert feedback(gw, "What is 1000 plus 1003? (reweigh-off)")["records"] == 256
        wait_for(lambda: reweighs(gw), timeout=10, what="a store_refreshed line with reweigh")
        ev = events(gw, "store_refreshed")
        assert len(ev) == 1 and ev[0]["records_after"] == 256, ev
        wait_for(lambda: health(gw)["store_reweigh_due"] is False, timeout=30,
                 what="/health saying no re-weighing is due")
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_refresh_ms 0, the gateway starts a refresh on a worker when a "
          "feedback append has left the re-weighing due", reweigh_without_periodic_refresh)

    def send_and_leave(gw, store, query, meanwhile=None):
        """A feedback whose append waits on the store's write lock (held by
        another connection) and whose client goes away meanwhile: the append
        runs when the lock is released, with no one to answer. meanwhile()
        runs before the lock is released. Returns once its 499 is logged."""
        import socket
        lock = sqlite3.connect(store, isolation_level=None, timeout=0)
        try:
            lock.execute("BEGIN IMMEDIATE")
            body = json.dumps({"query": query, "model": "smarty", "correctness": 1,
                               "output_tokens": 5}).encode()
            c = socket.create_connection(("127.0.0.1", gw.port))
            c.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)  # on the worker, waiting on the lock
            if meanwhile:
                meanwhile()
            c.close()
            # The close seen: the gateway has dropped the connection (the
            # scrape's own is the one left open).
            wait_for(lambda: gw.metrics()["llmroute_connections_open"] == 1, 10,
                     "the gateway to see the client gone")
        finally:
            lock.rollback()
            lock.close()
        wait_for(lambda: [l for l in gw.log_lines()
                          if l.get("path") == "/v1/feedback" and l.get("status") == 499],
                 10, "the gone client's log line")

    def reweigh_after_a_gone_client():
        # The append that makes the re-weighing due ran, though its client
        # had left: the refresh it leaves to the loop starts all the same
        # (it waited for the next feedback, and none may come).
        store = reweigh_store("reweigh-gone")
        gw = Gateway(bin_, wd, config(store, 0), name="reweigh-gone")
        send_and_leave(gw, store, "What is 1000 plus 1003? (reweigh-gone)")
        assert health(gw)["history_records"] == 256
        wait_for(lambda: reweighs(gw), timeout=10, what="a store_refreshed line with reweigh")
        wait_for(lambda: health(gw)["store_reweigh_due"] is False, timeout=30,
                 what="/health saying no re-weighing is due")
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_refresh_ms 0, a feedback append that leaves the re-weighing "
          "due starts its refresh also when its client has gone", reweigh_after_a_gone_client)

    def replaced_store_found_by_a_gone_client():
        # The append whose client had left found the store's file replaced:
        # it is logged and the file now at the path is opened, as when the
        # feedback is answered 503 store_replaced.
        store = seeded_store(bin_, wd, "swap-gone")
        new = seeded_store(bin_, wd, "swap-gone-new")
        import_ok(bin_, new, more_records(wd, "swap-gone-new"))
        gw = Gateway(bin_, wd, config(store, 0), name="swap-gone")
        send_and_leave(gw, store, "What is 8 plus 9? (swap-gone)",
                       meanwhile=lambda: os.rename(new, store))
        wait_for(lambda: events(gw, "store_replaced"), timeout=10, what="a store_replaced line")
        wait_for(lambda: events(gw, "store_reopened"), timeout=10, what="a store_reopened line")
        assert history_records(gw.port) == SEED + IMPORTED
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_refresh_ms 0, a store replaced under a feedback whose client "
          "has gone is logged and the new file opened", replaced_store_found_by_a_gone_client)

    def post_feedback(gw, query):
        st, _, body = request(gw.port, "POST", "/v1/feedback", json.dumps(
            {"query": query, "model": "smarty", "correctness": 1, "output_tokens": 5}))
        return st, json.loads(body)

    def integrity(store):
        c = sqlite3.connect(store)
        try:
            return c.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            c.close()

    def replacing_the_store_file_switches_to_the_new_one():
        store = seeded_store(bin_, wd, "swap")
        new = seeded_store(bin_, wd, "swap-new")
        import_ok(bin_, new, more_records(wd, "swap-new"))
        # No periodic refresh: the feedback is the first to notice the move.
        gw = Gateway(bin_, wd, config(store, 0), name="swap")
        st, j = post_feedback(gw, "What is 7 plus 9? (before the swap)")
        assert st == 200 and j["records"] == SEED + 1, (st, j)
        os.rename(new, store)
        st, j = post_feedback(gw, "What is 8 plus 9? (after the swap)")
        assert st == 503, (st, j)
        assert j["error"]["code"] == "store_replaced", j
        # The client is told what happened, not where: the path is the log's.
        assert "replaced by another file since the gateway opened it" in j["error"]["message"], j
        assert store not in j["error"]["message"] and wd not in j["error"]["message"], j
        ev = events(gw, "store_replaced")
        assert len(ev) == 1 and ev[0]["store"] == store, ev
        assert store in ev[0]["message"] and "another file" in ev[0]["message"], ev
        # The refresh that the refusal started opens the file at the path.
        wait_for(lambda: events(gw, "store_reopened"), timeout=10, what="a store_reopened line")
        ev = events(gw, "store_reopened")
        assert ev[0]["records_before"] == SEED + 1, ev
        assert ev[0]["records_after"] == SEED + IMPORTED, ev
        assert history_records(gw.port) == SEED + IMPORTED
        assert routed_model(gw) == "smarty"
        st, j = post_feedback(gw, "What is 8 plus 9? (again)")
        assert st == 200 and j["records"] == SEED + IMPORTED + 1, (st, j)
        # Another process writes the new file beside the gateway: it is whole.
        import_ok(bin_, store, more_records(wd, "swap-after"))
        assert integrity(store) == "ok"
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
        assert integrity(store) == "ok"
        c = sqlite3.connect(store)
        n = c.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        c.close()
        assert n == SEED + 2 * IMPORTED + 1, n
    check("a store moved to the path of the gateway's store: the feedback that notices is "
          "503 store_replaced (nothing written to the old file, one store_replaced line), "
          "the gateway then opens the new file (store_reopened), and an import into it "
          "beside the gateway leaves it whole",
          replacing_the_store_file_switches_to_the_new_one)

    def removed_store_refuses_feedback_until_sighup_finds_a_new_one():
        store = seeded_store(bin_, wd, "removed")
        gw = Gateway(bin_, wd, config(store, 0), name="removed")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(store + suffix):
                os.unlink(store + suffix)
        for i in range(3):
            st, j = post_feedback(gw, "What is %d plus 1? (removed)" % i)
            assert st == 503 and j["error"]["code"] == "store_replaced", (st, j)
            assert "removed since the gateway opened it" in j["error"]["message"], j
            assert wd not in j["error"]["message"], j
        assert not os.path.exists(store)  # nothing made at the path
        assert len(events(gw, "store_replaced")) == 1, events(gw, "store_replaced")
        assert history_records(gw.port) == SEED  # routing goes on with its copy
        # A file put there that is no store: said once more, with its reason.
        with open(store, "w") as f:
            f.write("h")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: len(events(gw, "store_replaced")) == 2, timeout=10,
                 what="a second store_replaced line")
        ev = events(gw, "store_replaced")[1]
        assert "cannot be opened" in ev["message"], ev
        assert "file is not a database" in ev["message"], ev
        for i in range(3):
            st, j = post_feedback(gw, "What is 9 plus %d? (removed, junk there)" % i)
            assert st == 503 and j["error"]["code"] == "store_replaced", (st, j)
            # Not "another file is at its path", as if the next refresh
            # would open it: that one found it cannot be opened.
            assert "cannot be opened" in j["error"]["message"], j
            assert "another file" not in j["error"]["message"], j
            assert wd not in j["error"]["message"], j
        # Neither those feedbacks nor the refreshes they start (which find
        # the same reason) log it again. (A refresh still running when this
        # looks would be missed, never a reason to fail.)
        assert len(events(gw, "store_replaced")) == 2, events(gw, "store_replaced")
        os.unlink(store)
        import_ok(bin_, store, more_records(wd, "removed"))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: events(gw, "store_reopened"), timeout=10, what="a store_reopened line")
        assert history_records(gw.port) == IMPORTED
        st, j = post_feedback(gw, "What is 5 plus 1? (removed, new store)")
        assert st == 200 and j["records"] == IMPORTED + 1, (st, j)
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("the gateway's store removed: every feedback is 503 store_replaced, logged once, "
          "nothing is created at the path, a file there that is no store is logged once with "
          "why and the feedback told it cannot be opened (no path), and SIGHUP opens the "
          "store imported there later",
          removed_store_refuses_feedback_until_sighup_finds_a_new_one)

    def moved_gateway(name, server):
        """A gateway over 300 records (grouped, and 40 appends are short of
        the re-weighing) after 40 feedbacks on a new kind of query, on which
        the cheap model is right: (gateway, config path, store, the queries
        to compare)."""
        store = os.path.join(wd, name + ".db")
        seed = os.path.join(wd, name + "-seed.jsonl")
        smart_history(seed, 300, name, kinds=("arithmetic", "code", "translation"))
        import_ok(bin_, store, seed)
        c = config(store, None)
        c["server"] = server
        c["router"]["predictor"] = "default"  # the groups matter
        # Requirement 0: the cheap model, whose predicted quality is shown.
        c["router"]["performance_requirement"] = 0.0
        cfg = os.path.join(wd, name + ".json")
        with open(cfg, "w") as f:
            json.dump(c, f)
        gw = Gateway(bin_, wd, c, name=name)
        novel = "Translate the zigzag vuvuzela kumquat poem into french"
        for i in range(40):
            st, _, body = request(gw.port, "POST", "/v1/feedback", json.dumps(
                {"query": "%s %d" % (novel, i % 4), "model": "cheapo", "correctness": 1,
                 "output_tokens": 5}))
            assert st == 200, (st, body)
        return gw, cfg, store, [novel, "What is 3 plus 9?",
                                "Translate the poem about autumn into french"]

    def sighup_makes_routing_match_a_fresh_open():
        gw, cfg, store, queries = moved_gateway(
            "converge", {"store_refresh_ms": 3600000})  # only SIGHUP refreshes

        def predicted(q):
            return gateway_prediction(gw, q)

        def fresh(q):
            return fresh_prediction(cfg, store, q)

        before = [predicted(q) for q in queries]
        want = [fresh(q) for q in queries]
        assert any(abs(b[1] - w[1]) > 1e-6 for b, w in zip(before, want)), (before, want)
        assert events(gw, "store_refreshed") == [], events(gw, "store_refreshed")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: events(gw, "store_refreshed"), timeout=10,
                 what="a store_refreshed line")
        ev = events(gw, "store_refreshed")
        assert len(ev) == 1 and ev[0]["appended_since_build"] == 40, ev
        assert ev[0]["records_before"] == 340 and ev[0]["records_after"] == 340, ev
        assert ev[0]["reweigh"] is False, ev
        after = [predicted(q) for q in queries]
        for a, w in zip(after, want):
            assert a[0] == w[0] and abs(a[1] - w[1]) < 1e-9, (after, want)
        # Built whole now: another SIGHUP has nothing to rebuild.
        gw.signal(signal.SIGHUP)
        time.sleep(1.0)
        assert len(events(gw, "store_refreshed")) == 1, events(gw, "store_refreshed")
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("feedback appends leave the gateway's copy on the weights and groups of its last "
          "build; SIGHUP rebuilds it (logged with appended_since_build), and it then predicts "
          "as `llmroute route` on the same file", sighup_makes_routing_match_a_fresh_open)

    def periodic_refresh_converges_after_store_rebuild_min_ms():
        # No SIGHUP: with store_rebuild_min_ms 0 the periodic refresh
        # rebuilds once the last rebuild's cost allows (the 50x factor: well
        # under a second at 340 records).
        gw, cfg, store, queries = moved_gateway(
            "autoconverge", {"store_refresh_ms": 200, "store_rebuild_min_ms": 0})
        want = [fresh_prediction(cfg, store, q) for q in queries]

        def converged():
            # The copy is a fresh open's once no append is left out of its
            # last build. Not the logged appended_since_build counts adding
            # up to the 40 feedbacks: one that commits after a rebuild read
            # that count but before it read the file is in that build and in
            # no count, so they summed to 39 for good.
            ev = events(gw, "store_refreshed")
            if not ev or gw.metrics().get("llmroute_store_appended_since_build") != 0:
                return False
            got = [gateway_prediction(gw, q) for q in queries]
            return all(g[0] == w[0] and abs(g[1] - w[1]) < 1e-9 for g, w in zip(got, want))
        # A rebuild that ran while the feedback came in leaves the last
        # appends to the next, which waits 50 times its duration: seconds
        # under a sanitizer on a loaded machine (0.45 s under
        # ThreadSanitizer on 2 cores, with appends beside it). So the wait
        # is 30 s past when the last rebuild allows the next.
        seen, deadline = 0, time.monotonic() + 30
        while not converged():
            ev = events(gw, "store_refreshed")
            if len(ev) > seen:
                seen = len(ev)
                deadline = max(deadline, time.monotonic() + 50 * ev[-1]["ms"] / 1000 + 30)
            assert time.monotonic() < deadline, ("the periodic rebuild", ev)
            time.sleep(0.05)
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("with server.store_rebuild_min_ms 0, the periodic refresh rebuilds a copy that "
          "feedback moved, with no SIGHUP, and it then predicts as `llmroute route`",
          periodic_refresh_converges_after_store_rebuild_min_ms)

    def feedback_goes_on_beside_a_rebuild():
        # The refresh and the feedback appends took turns on one worker
        # lane, so an append queued behind a SIGHUP's rebuild waited for
        # the whole of it (3.8 s at 60,000 records), where the library
        # makes appends wait only for its last short step.
        store = os.path.join(wd, "big.db")
        seed = os.path.join(wd, "big-seed.jsonl")
        smart_history(seed, 5000, "big", kinds=("arithmetic", "code", "translation"))
        import_ok(bin_, store, seed)
        gw = Gateway(bin_, wd, config(store, 0), name="big", start_timeout=90)
        feedback(gw, "What is 7 plus 7? (big, before)")  # so that SIGHUP rebuilds
        gw.signal(signal.SIGHUP)
        for i in range(3):
            feedback(gw, "What is %d plus 7? (big, during)" % i)
        wait_for(lambda: events(gw, "store_refreshed"), timeout=60, what="the SIGHUP's rebuild")
        rebuild_s = events(gw, "store_refreshed")[0]["ms"] / 1000
        assert events(gw, "store_refreshed")[0]["appended_since_build"] >= 1
        # Each append's time as the gateway logged it, from its request to its
        # answer, which a wait behind the rebuild is part of; the client's clock
        # also counted its own connect and scheduling, which on a loaded machine
        # are not the gateway's.
        took = [l["latency_ms"] / 1000 for l in gw.log_lines()
                if l.get("path") == "/v1/feedback" and "status" in l][-3:]
        assert len(took) == 3, took
        # Meaningful only when the rebuild takes a while (0.3 to 0.6 s here,
        # more under the sanitizers).
        if rebuild_s > 0.2:
            assert max(took) < rebuild_s / 2, (took, rebuild_s)
        assert history_records(gw.port) == 5004
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
    check("feedback appends go on while a SIGHUP rebuilds the store's copy, not after it",
          feedback_goes_on_beside_a_rebuild)

    def store_warnings(gw):
        return [e["message"] for e in events(gw, "reload_warning")
                if "router.store" in e["message"]]

    def reload_with(gw, cfg):
        gw.write_config(cfg)
        n = len(events(gw, "reloaded")) + len(events(gw, "reload_failed"))
        gw.signal(signal.SIGHUP)
        wait_for(lambda: len(events(gw, "reloaded")) + len(events(gw, "reload_failed")) > n,
                 timeout=30, what="the reload")
        assert not events(gw, "reload_failed"), events(gw, "reload_failed")

    def reload_cannot_change_the_store():
        # The README: a changed router.store is not applied but logged as a
        # reload_warning event at each reload whose file asks for another,
        # naming both; the gateway goes on with the store it opened.
        store = seeded_store(bin_, wd, "kept")
        other = seeded_store(bin_, wd, "asked")
        import_ok(bin_, other, more_records(wd, "asked"))
        gw = Gateway(bin_, wd, config(store, 0), name="kept")
        changed = ("router.store changed to '%s'; the gateway goes on with the store it "
                   "opened, '%s', until a restart" % (other, store))
        for k in (1, 2):
            reload_with(gw, config(other, 0))
            assert store_warnings(gw) == [changed] * k, store_warnings(gw)
            assert history_records(gw.port) == SEED
        reload_with(gw, config(store, 0))  # the store it has: nothing to say
        assert len(store_warnings(gw)) == 2, store_warnings(gw)
        none = config(store, 0)
        del none["router"]["store"]
        none["routes"][0]["strategy"] = "sequential"  # a smart one needs a store
        reload_with(gw, none)
        assert store_warnings(gw)[2:] == [
            "router.store was removed; the gateway goes on with the store it opened, '%s', "
            "until a restart" % store], store_warnings(gw)
        assert history_records(gw.port) == SEED
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0

        bare = Gateway(bin_, wd, none, name="storeless")
        named = json.loads(json.dumps(none))
        named["router"]["store"] = store
        reload_with(bare, named)
        assert store_warnings(bare) == [
            "router.store names '%s', but the gateway started without a store; a new store "
            "needs a restart" % store], store_warnings(bare)
        bare.signal(signal.SIGTERM)
        assert bare.wait() == 0
    check("a reload asking for another router.store, or for none, is warned about at each "
          "reload, naming both; the gateway keeps the store it opened",
          reload_cannot_change_the_store)

    def bad_values_are_config_errors():
        store = os.path.join(wd, "bad.db")
        for i, bad in enumerate([-1, "1000", 1.5, 86400001, True]):
            path = os.path.join(wd, "bad%d.json" % i)
            with open(path, "w") as f:
                json.dump(config(store, bad), f)
            r = subprocess.run([bin_, "serve", "--config", path, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.store_refresh_ms" in r.stderr, (bad, r.stderr)
            c = config(store, 1000)
            c["server"]["store_rebuild_min_ms"] = bad
            with open(path, "w") as f:
                json.dump(c, f)
            r = subprocess.run([bin_, "serve", "--config", path, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.store_rebuild_min_ms" in r.stderr, (bad, r.stderr)
    check("server.store_refresh_ms or server.store_rebuild_min_ms that is not an integer from "
          "0 to 86400000 is a config error naming the key (exit 2)", bad_values_are_config_errors)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: test_store_refresh.py LLMROUTE")
    main(sys.argv[1])
    finish()
