"""test_crash.py -- the history store after a hard kill (SIGKILL): an
acknowledged feedback append is on disk, an import is all or nothing, and a
killed open leaves the file as it was.

    python3 test_crash.py GROUP LLMROUTE

GROUP is `feedback` (the gateway killed during a flood of POST /v1/feedback)
or `import` (`llmroute import` killed mid-transaction, and a store open
killed while it rebuilds its in-memory copy). Every kill is triggered by what
the process has done (acknowledged answers, the size of the -wal file), not
by a clock, and every wait is bounded. The store is read afterwards with
Python's sqlite3 module, read-only, with no llmroute process running.
"""
import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (HOST, Gateway, chat, check, finish, request, smart_config as config,  # noqa
                    smart_history as history, wait_for, workdir)

ASK = lambda text: [{"role": "user", "content": text}]  # noqa: E731


def run(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def import_ok(bin_, store, path):
    r = run([bin_, "import", "--store", store, path])
    assert r.returncode == 0, (r.returncode, r.stderr)
    return r


def cli_count(bin_, store):
    """The store's size as `llmroute import --store S` (no data) prints it: an
    open through the library, read-write, as the next user of the store does."""
    r = run([bin_, "import", "--store", store])
    assert r.returncode == 0, ("the store does not open", r.returncode, r.stderr)
    return int(r.stdout.rsplit(":", 1)[1].split()[0])


def snapshot(store):
    """(records, sha256 of models, records and outcomes) read-only."""
    db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        h = hashlib.sha256()
        for sql in ("SELECT id, name FROM models ORDER BY id",
                    "SELECT id, query, input_tokens, task FROM records ORDER BY id",
                    "SELECT record_id, model_id, correctness, output_tokens FROM outcomes "
                    "ORDER BY rowid"):
            for row in db.execute(sql):
                h.update(repr(row).encode())
        n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return n, h.hexdigest()
    finally:
        db.close()


def queries(store):
    db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
    try:
        return [r[0] for r in db.execute("SELECT query FROM records ORDER BY id")]
    finally:
        db.close()


def smart_routes(port):
    st, h, j, _ = chat(port, {"model": "auto", "messages": ASK("What is 50 plus 53?")})
    assert st == 200 and h["x-llmroute-model"] == "cheapo", (st, h, j)
    st, h, j, _ = chat(port, {"model": "auto", "messages": ASK(
        "Write a python function parse_77 that reads a csv file into a list of dicts")})
    assert st == 200 and h["x-llmroute-model"] == "smarty", (st, h, j)


# ==== The gateway killed during a flood of feedback ====

THREADS = 6
KILL_AFTER = 300  # acknowledged appends before the kill


def feedback(bin_):
    wd = workdir()
    store = os.path.join(wd, "history.db")
    hist = os.path.join(wd, "history.jsonl")
    history(hist, 80, "seed")
    import_ok(bin_, store, hist)
    before = cli_count(bin_, store)
    gw = Gateway(bin_, wd, config(store))

    sent, acked, refused, lock = [], [], [], threading.Lock()
    stop = threading.Event()

    def flood(t):
        # Keep-alive connections, reopened after an error until the stop.
        conn, i = None, 0
        while not stop.is_set():
            q = "crash probe from thread %d, feedback number %d" % (t, i)
            i += 1
            body = json.dumps({"query": q, "model": "smarty" if i % 2 else "cheapo",
                               "correctness": i % 3 != 0, "output_tokens": 5})
            with lock:
                sent.append(q)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, gw.port, timeout=10)
                conn.request("POST", "/v1/feedback", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
                if gw.proc.poll() is not None:
                    return
                continue
            with lock:
                if r.status == 200 and json.loads(data).get("status") == "recorded":
                    acked.append(q)
                else:
                    refused.append((r.status, data[:200]))
        if conn:
            conn.close()

    threads = [threading.Thread(target=flood, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= KILL_AFTER, 60, "%d acknowledged feedbacks" % KILL_AFTER)
        gw.signal(signal.SIGKILL)
        gw.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    with lock:
        n_sent, acked_set = len(sent), set(acked)
    print("# killed: %d feedback sent, %d acknowledged" % (n_sent, len(acked_set)), flush=True)
    assert not refused, ("feedback refused before the kill", refused[:3])

    gw2 = Gateway(bin_, wd, config(store), name="gw2")

    def restarted_store_holds_every_acknowledged_append():
        st, _, body = request(gw2.port, "GET", "/health")
        assert st == 200, st
        n = json.loads(body)["history_records"]
        added = n - before
        print("# after the restart: %d records added (acknowledged %d, sent %d)"
              % (added, len(acked_set), n_sent), flush=True)
        assert len(acked_set) <= added <= n_sent, (len(acked_set), added, n_sent)
    check("after a SIGKILL mid-flood the restarted gateway counts between the acknowledged "
          "and the sent feedback", restarted_store_holds_every_acknowledged_append)

    check("smart routing works after the restart", smart_routes, gw2.port)

    def every_acknowledged_query_is_stored():
        gw2.signal(signal.SIGTERM)
        assert gw2.wait() == 0
        stored = queries(store)
        probes = [q for q in stored if q.startswith("crash probe")]
        assert len(probes) == len(set(probes)), "a feedback stored twice"
        missing = acked_set - set(probes)
        assert not missing, ("%d acknowledged feedbacks are not in the store" % len(missing),
                             sorted(missing)[:5])
        assert set(probes) <= set(sent), "a stored feedback that was never sent"
        assert len(stored) == cli_count(bin_, store)
    check("every acknowledged feedback is in the store, once, read back from the file",
          every_acknowledged_query_is_stored)


# ==== Import killed mid-transaction; an open killed mid-rebuild ====

BIG = 1500  # records of 8 KB in the big file: 12 MB, written in about a second


def wal_size(store):
    try:
        return os.path.getsize(store + "-wal")
    except OSError:
        return 0


def killed_import(bin_, store, path, wal_bytes):
    """Start `llmroute import`, SIGKILL it once the store's -wal holds
    wal_bytes (the import's one transaction is then under way): the seconds
    it ran."""
    t0 = time.monotonic()
    p = subprocess.Popen([bin_, "import", "--store", store, path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def grown():
            if p.poll() is not None:
                raise AssertionError("the import ended (exit %s) before its -wal reached %d "
                                     "bytes: make the file bigger" % (p.returncode, wal_bytes))
            return wal_size(store) >= wal_bytes
        wait_for(grown, 120, "the -wal to reach %d bytes" % wal_bytes)
        p.kill()
        p.wait(timeout=10)
        return time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def import_(bin_):
    wd = workdir()
    store = os.path.join(wd, "history.db")
    seed = os.path.join(wd, "seed.jsonl")
    big = os.path.join(wd, "big.jsonl")
    history(seed, 200, "seed")
    history(big, BIG, "big", 8000)
    import_ok(bin_, store, seed)
    before = snapshot(store)
    assert before[0] == 200, before

    # How large the import's transaction gets: the same import into a copy.
    ref = os.path.join(wd, "reference.db")
    import_ok(bin_, ref, seed)
    ref_before = os.path.getsize(ref)
    import_ok(bin_, ref, big)
    grown_by = os.path.getsize(ref) - ref_before
    assert grown_by > 4 << 20, grown_by

    def killed_imports_change_nothing():
        for frac in (0.1, 0.4, 0.7):
            ran = killed_import(bin_, store, big, int(grown_by * frac))
            print("# import killed after %.2f s, its -wal at %d%% of the import's size"
                  % (ran, frac * 100), flush=True)
            assert cli_count(bin_, store) == before[0]
            assert snapshot(store) == before, "the store changed after a killed import"
    check("an import killed mid-transaction leaves the store exactly as it was",
          killed_imports_change_nothing)

    def import_after_the_kills_succeeds():
        import_ok(bin_, store, big)
        assert cli_count(bin_, store) == before[0] + BIG
        assert snapshot(store) == snapshot(ref), "not the same store as an uninterrupted import"
    check("the same import then succeeds, as if never interrupted",
          import_after_the_kills_succeeds)

    def killed_import_into_a_new_store():
        # The store is created (its schema committed) before the import's
        # transaction: killed in that transaction, it is an empty store.
        fresh = os.path.join(wd, "fresh.db")
        killed_import(bin_, fresh, big, 1 << 20)
        assert cli_count(bin_, fresh) == 0
        assert snapshot(fresh)[0] == 0
        import_ok(bin_, fresh, seed)
        assert snapshot(fresh) == before
    check("an import killed while it fills a new store leaves an empty store that opens",
          killed_import_into_a_new_store)

    def killed_opens_write_nothing():
        # The store now holds BIG + 200 records, so an open rebuilds a large
        # copy. Leave a -wal behind (an import killed mid-way), then kill
        # gateways at a few points of their start (a read-write open, as a
        # restart does; a gateway closes its store only on SIGTERM, so the
        # last kill, once it listens, comes after the open and before any
        # close): the files must not change, and the store must open.
        killed_import(bin_, store, big, 1 << 20)
        full = snapshot(store)
        files = {}
        for suffix in ("", "-wal"):
            with open(store + suffix, "rb") as f:
                files[suffix] = hashlib.sha256(f.read()).hexdigest()
        cfg = os.path.join(wd, "serve.json")
        with open(cfg, "w") as f:
            json.dump(config(store), f)
        for delay in (0.0, 0.05, 0.2, None):
            port_file = os.path.join(wd, "serve.port")
            if os.path.exists(port_file):
                os.unlink(port_file)
            p = subprocess.Popen([bin_, "serve", "--config", cfg, "--listen", HOST + ":0",
                                  "--port-file", port_file],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                if delay is None:
                    wait_for(lambda: os.path.exists(port_file) and open(port_file).read(), 60,
                             "the gateway to listen")
                else:
                    time.sleep(delay)
            finally:
                p.kill()
                rc = p.wait(timeout=10)
            # Killed, not exited: a gateway that failed or crashed while it
            # opened the store would leave the files as they were too.
            assert rc == -signal.SIGKILL, "the gateway exited %s before the kill%s" % (
                rc, "" if delay is None else " %.2f s after its start" % delay)
            for suffix, digest in files.items():
                with open(store + suffix, "rb") as f:
                    assert hashlib.sha256(f.read()).hexdigest() == digest, \
                        "a killed open changed %s%s" % (os.path.basename(store), suffix)
        assert snapshot(store) == full
        assert cli_count(bin_, store) == full[0]
    check("a gateway killed while its store opens writes nothing; the store opens",
          killed_opens_write_nothing)

    def read_only_open_after_a_kill():
        # route --store opens read-only: it must read a store whose writer died.
        killed_import(bin_, store, big, 1 << 20)
        cfg = os.path.join(wd, "route.json")
        with open(cfg, "w") as f:
            json.dump(config(store), f)
        r = run([bin_, "route", "--config", cfg, "--strategy", "smart", "--models",
                 "cheapo,smarty", "--requirement", "0.7",
                 "What is 50 plus 53?",
                 "Write a python function parse_77 that reads a csv file into a list of dicts"])
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert r.stdout.split() == ["cheapo", "smarty"], r.stdout
    check("a read-only open (route --store) reads a store whose writer was killed",
          read_only_open_after_a_kill)


if __name__ == "__main__":
    groups = {"feedback": feedback, "import": import_}
    if len(sys.argv) != 3 or sys.argv[1] not in groups:
        sys.exit("usage: test_crash.py feedback|import LLMROUTE")
    groups[sys.argv[1]](sys.argv[2])
    finish()
