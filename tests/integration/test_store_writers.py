"""test_store_writers.py -- two processes writing one history store: a
running gateway appending feedback and `llmroute import` run beside it.

    python3 test_store_writers.py LLMROUTE

Record ids come from each process's in-memory copy of the store, so a
gateway that did not notice the import's commit gave its next feedback an id
the import had taken (500 store_error, "UNIQUE constraint failed:
records.id", for every feedback until a restart). A write lock held longer
than the gateway waits (5 s) is a 503 store_busy, not a 500 store_error;
feedback queued behind it is answered with it, and routing goes on. The
store is read at the end with Python's sqlite3 module, read-only, with the
gateway stopped.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (Gateway, check, finish, history_records, import_ok, request,  # noqa
                    smart_config as config, smart_history as history, wait_for, workdir)

SEED = 40
IMPORTED = 5


def feedback(port, query, model):
    body = json.dumps({"query": query, "model": model, "correctness": 1, "output_tokens": 5})
    st, _, data = request(port, "POST", "/v1/feedback", body,
                          {"Content-Type": "application/json"})
    assert st == 200, (st, data)
    j = json.loads(data)
    assert j["status"] == "recorded", j
    return j["records"]


def main(bin_):
    wd = workdir()
    store = os.path.join(wd, "history.db")
    seed = os.path.join(wd, "seed.jsonl")
    more = os.path.join(wd, "more.jsonl")
    history(seed, SEED, "seed")
    history(more, IMPORTED, "imported beside the gateway")
    import_ok(bin_, store, seed)
    gw = Gateway(bin_, wd, config(store))

    def feedback_after_an_import_into_the_live_store():
        assert feedback(gw.port, "first feedback question", "cheapo") == SEED + 1
        import_ok(bin_, store, more)
        assert feedback(gw.port, "second feedback question", "smarty") == SEED + IMPORTED + 2
        assert feedback(gw.port, "third feedback question", "smarty") == SEED + IMPORTED + 3
        assert history_records(gw.port) == SEED + IMPORTED + 3
    check("feedback after `llmroute import` into the gateway's store is recorded (200), and "
          "/health counts the imported records", feedback_after_an_import_into_the_live_store)

    def feedback_while_another_process_holds_the_write_lock():
        # Another process holds a write transaction past the gateway's 5 s
        # wait: 503 store_busy with Retry-After, nothing stored; then a retry
        # is recorded once. An import into the locked store fails the same way.
        lock = sqlite3.connect(store, isolation_level=None, timeout=0)
        try:
            lock.execute("BEGIN IMMEDIATE")
            body = json.dumps({"query": "busy feedback question", "model": "cheapo",
                               "correctness": 1, "output_tokens": 5})
            st, hdrs, data = request(gw.port, "POST", "/v1/feedback", body, timeout=30)
            assert st == 503, (st, data)
            assert hdrs.get("retry-after") == "1", hdrs
            err = json.loads(data)["error"]
            assert err["code"] == "store_busy", err
            assert "busy" in err["message"] and "another process" in err["message"], err
            r = subprocess.run([bin_, "import", "--store", store, more], capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 1, (r.returncode, r.stderr)
            assert store in r.stderr and "another process" in r.stderr, r.stderr
            assert history_records(gw.port) == SEED + IMPORTED + 3
        finally:
            lock.rollback()
            lock.close()
        assert feedback(gw.port, "busy feedback question", "cheapo") == SEED + IMPORTED + 4
        assert history_records(gw.port) == SEED + IMPORTED + 4
    check("feedback while another process holds the store's write lock is a 503 store_busy "
          "with Retry-After, and its retry is recorded once; an import then exits 1 naming "
          "the store", feedback_while_another_process_holds_the_write_lock)

    def queued_feedback_and_routing_while_the_store_is_held():
        # Three feedbacks at once against a held store: the first waits its 5 s,
        # the two queued behind it (they waited as long) are answered with it, not
        # 5 and 10 s later; /v1/route batches meanwhile do not queue behind them
        # (nor behind the store refresh, which waits on the store too). Both are
        # checked by order, not by speed: every route is answered before any
        # feedback (a route waiting on the store would come after the first
        # feedback's 5 s wait), and the three feedbacks within 4 s of one another
        # (answered one after another, each waiting its own 5 s, they would be 5 s
        # or more apart).
        def busy_lines():
            return [l for l in gw.log_lines()
                    if l.get("path") == "/v1/feedback" and l.get("error") == "store_busy"]
        logged_before = len(busy_lines())
        lock = sqlite3.connect(store, isolation_level=None, timeout=0)
        res = {}
        routed = []

        def one(k):
            t = time.monotonic()
            body = json.dumps({"query": "queued feedback %d" % k, "model": "cheapo",
                               "correctness": 1, "output_tokens": 5})
            st, _, data = request(gw.port, "POST", "/v1/feedback", body, timeout=60)
            done = time.monotonic()
            res[k] = (st, json.loads(data).get("error", {}).get("code"), done - t, done)
        try:
            lock.execute("BEGIN IMMEDIATE")
            start = time.monotonic()
            ts = [threading.Thread(target=one, args=(k,)) for k in range(3)]
            for t in ts:
                t.start()
            # By 2.5 s the periodic store refresh (every second) has started and
            # waits on the store too.
            for at in (0.5, 1.5, 2.5):
                time.sleep(max(0, at - (time.monotonic() - start)))
                t0 = time.monotonic()
                st, _, data = request(gw.port, "POST", "/v1/route", json.dumps(
                    {"queries": [{"query": "What is 1 plus 1"}], "strategy": "smart"}),
                    timeout=60)
                done = time.monotonic()
                assert st == 200, (at, st, data)
                routed.append((at, done - t0, done))
            for t in ts:
                t.join(60)
        finally:
            lock.rollback()
            lock.close()
        assert sorted(res) == [0, 1, 2], res
        for st, code, _, _ in res.values():
            assert st == 503 and code == "store_busy", res
        first_feedback = min(r[3] for r in res.values())
        assert all(done < first_feedback for _, _, done in routed), \
            ("a route was answered only after the feedbacks waiting on the store",
             routed, res)
        ends = [r[3] for r in res.values()]
        assert max(ends) - min(ends) < 4, ("queued feedback waited its own 5 s", res)
        # Each line says why, the two answered without an append of their
        # own too (they had no "message": the library had said nothing).
        lines = wait_for(lambda: busy_lines()[logged_before:]
                         if len(busy_lines()) >= logged_before + 3 else None, 5,
                         "the three store_busy log lines")
        assert len(lines) == 3, lines
        for l in lines:
            assert l["status"] == 503, l
            assert store in l.get("message", "") and "busy" in l["message"], l
        assert history_records(gw.port) == SEED + IMPORTED + 4
    check("feedback queued behind a busy store is answered store_busy with the first, not "
          "5 s later each; /v1/route does not wait behind it",
          queued_feedback_and_routing_while_the_store_is_held)

    def feedback_whose_client_left_while_queued_is_not_stored():
        # A feedback waiting its turn behind one that waits on the store's
        # write lock, whose client then goes away: its append has not
        # started, so nothing is stored (it was, and counted recorded: a
        # client that timed out and sent it again recorded it twice).
        import socket
        m0 = gw.metrics()
        lock = sqlite3.connect(store, isolation_level=None, timeout=0)
        res = {}

        def first():
            res["st"] = request(gw.port, "POST", "/v1/feedback", json.dumps(
                {"query": "held feedback question", "model": "cheapo", "correctness": 1,
                 "output_tokens": 5}), timeout=60)
        try:
            lock.execute("BEGIN IMMEDIATE")
            t = threading.Thread(target=first)
            t.start()
            time.sleep(0.5)  # the first is on the worker, waiting on the lock
            body = json.dumps({"query": "feedback of a client gone", "model": "cheapo",
                               "correctness": 1, "output_tokens": 5}).encode()
            c = socket.create_connection(("127.0.0.1", gw.port))
            c.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)  # read and queued behind the first
            c.close()
            time.sleep(0.5)  # the close seen
        finally:
            lock.rollback()
            lock.close()
        t.join(60)
        assert res["st"][0] == 200, res
        ended = wait_for(lambda: [l for l in gw.log_lines()
                                  if l.get("path") == "/v1/feedback" and l.get("status") == 499],
                         10, "the gone client's log line")
        assert ended[-1].get("error") == "client_closed", ended
        m = gw.metrics()
        for outcome, more in (("recorded", 1), ("client_closed", 1)):
            key = 'llmroute_feedback_total{outcome="%s"}' % outcome
            assert m.get(key, 0) == m0.get(key, 0) + more, (outcome, m0.get(key), m.get(key))
        assert history_records(gw.port) == SEED + IMPORTED + 5
    check("feedback whose client leaves while it waits its turn is not stored "
          "(client_closed), the one before it is",
          feedback_whose_client_left_while_queued_is_not_stored)

    def every_record_once_in_order():
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
        db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
        try:
            rows = db.execute("SELECT id, query FROM records ORDER BY id").fetchall()
            n_outcomes = db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
        finally:
            db.close()
        assert [r[0] for r in rows] == list(range(SEED + IMPORTED + 5)), rows[SEED - 1:]
        queries = [r[1] for r in rows]
        assert len(set(queries)) == len(queries), "a record is stored twice"
        assert queries[SEED] == "first feedback question", queries[SEED]
        assert all("imported beside the gateway" in q
                   for q in queries[SEED + 1:SEED + 1 + IMPORTED]), queries
        assert queries[SEED + IMPORTED + 1:] == ["second feedback question",
                                                "third feedback question",
                                                "busy feedback question",
                                                "held feedback question"], queries
        assert n_outcomes == 2 * (SEED + IMPORTED) + 5, n_outcomes
    check("the store holds every record once, with ids in the order they were written",
          every_record_once_in_order)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: test_store_writers.py LLMROUTE")
    main(sys.argv[1])
    finish()
