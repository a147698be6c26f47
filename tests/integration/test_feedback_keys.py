"""test_feedback_keys.py -- POST /v1/feedback with an Idempotency-Key: a
retried feedback (the client saw no 200) is stored once; and the keys
(server.feedback_api_keys_env) that alone may write feedback when set.

    python3 test_feedback_keys.py LLMROUTE

The first request with a key answers 200 "recorded", a repeat 200
"already_recorded" with nothing stored; a bad key is a 400 naming the
header. The keys are in the store's file: a restarted gateway, and a second
gateway on the same file, know them. A key is remembered for
server.feedback_key_ttl_s (24 hours by default): the tests age keys by
moving their times back in the file, as the gateway reads them from there,
so nothing waits for the time to pass. Keyed feedback deletes expired keys,
and a store made before key times is migrated with its keys kept.
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
                    smart_config as config, smart_history as history, wait_for, workdir)

SEED = 30


def feedback(port, query, key=None, model="cheapo"):
    body = json.dumps({"query": query, "model": model, "correctness": 1, "output_tokens": 5})
    headers = {"Idempotency-Key": key} if key is not None else {}
    st, _, data = request(port, "POST", "/v1/feedback", body, headers)
    return st, json.loads(data)


def main(bin_):
    wd = workdir()
    store = os.path.join(wd, "history.db")
    seed = os.path.join(wd, "seed.jsonl")
    history(seed, SEED, "seed")
    import_ok(bin_, store, seed)
    gw = Gateway(bin_, wd, config(store))

    def same_key_twice_is_recorded_once():
        before = history_records(gw.port)
        st, j = feedback(gw.port, "a keyed feedback question", "fb-0001")
        assert (st, j) == (200, {"status": "recorded", "records": before + 1}), (st, j)
        st, j = feedback(gw.port, "a keyed feedback question", "fb-0001")
        assert (st, j) == (200, {"status": "already_recorded", "records": before + 1}), (st, j)
        assert history_records(gw.port) == before + 1
        # Another key, and no key at all, are recorded.
        st, j = feedback(gw.port, "a keyed feedback question", "fb-0002")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        st, j = feedback(gw.port, "a keyed feedback question")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        assert history_records(gw.port) == before + 3
    check("POST /v1/feedback twice with one Idempotency-Key: 200 recorded, then 200 "
          "already_recorded, stored once", same_key_twice_is_recorded_once)

    def bad_keys_are_refused_naming_the_header():
        before = history_records(gw.port)
        for key in ["", "k" * 256, "a b", "tab\there"]:
            st, j = feedback(gw.port, "a badly keyed question", key)
            err = j["error"]
            assert st == 400 and err["param"] == "Idempotency-Key", (key, st, j)
            assert "Idempotency-Key" in err["message"], err
        st, j = feedback(gw.port, "a badly keyed question", "k" * 255)
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        assert history_records(gw.port) == before + 1
    check("a bad Idempotency-Key (empty, 256 bytes, a space or tab) is a 400 naming the "
          "header and stores nothing", bad_keys_are_refused_naming_the_header)

    def repeated_key_header_is_refused():
        import http.client
        before = history_records(gw.port)
        body = json.dumps({"query": "a twice keyed question", "model": "cheapo",
                           "correctness": 1, "output_tokens": 5}).encode()
        for keys in [["fb-x1", "fb-x2"], ["fb-same", "fb-same"], ["fb-a", "fb-b", "fb-c"]]:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            conn.putrequest("POST", "/v1/feedback")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            for i, k in enumerate(keys):
                conn.putheader("Idempotency-Key" if i % 2 == 0 else "idempotency-key", k)
            conn.endheaders(body)
            r = conn.getresponse()
            j = json.loads(r.read())
            conn.close()
            err = j.get("error") or {}
            assert r.status == 400 and err.get("param") == "Idempotency-Key", (keys, r.status, j)
            assert "sent %d times" % len(keys) in err["message"], err
        assert history_records(gw.port) == before
        # Neither key was recorded: each alone is new.
        st, j = feedback(gw.port, "a twice keyed question", "fb-same")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
    check("Idempotency-Key sent twice (different or equal values) or three times is a 400 "
          "naming the header and stores nothing", repeated_key_header_is_refused)

    def store_rows():
        """Every record, outcome and key in the store's file, to see that a
        refused feedback changed nothing."""
        c = sqlite3.connect(store, timeout=30)
        try:
            return (c.execute("SELECT * FROM records ORDER BY id").fetchall(),
                    c.execute("SELECT * FROM outcomes ORDER BY rowid").fetchall(),
                    c.execute("SELECT * FROM feedback_keys ORDER BY key").fetchall())
        finally:
            c.close()

    def key_reused_with_another_body_is_422():
        first = {"query": "a question sent once, then changed", "model": "cheapo",
                 "correctness": 0.75, "output_tokens": 12, "input_tokens": 90}
        st, _, data = request(gw.port, "POST", "/v1/feedback", json.dumps(first),
                              {"Idempotency-Key": "fb-reused"})
        assert (st, json.loads(data)["status"]) == (200, "recorded"), (st, data)
        before = history_records(gw.port)
        rows = store_rows()
        reused0 = gw.metrics().get('llmroute_feedback_total{outcome="key_reused"}', 0)
        # The same body however it is written (key order, whitespace, an
        # escape, 12.0 for 12) is the same feedback: already recorded.
        for same in ['{"output_tokens": 12.0, "input_tokens": 90, "correctness": 0.75,\n'
                     '  "model": "cheapo", "query": "a question sent once, then ch\\u0061nged"}',
                     json.dumps(first, indent=4, sort_keys=True)]:
            st, _, data = request(gw.port, "POST", "/v1/feedback", same,
                                  {"Idempotency-Key": "fb-reused"})
            assert (st, json.loads(data)) == (200, {"status": "already_recorded",
                                                    "records": before}), (same, st, data)
        # Any recorded field changed is another feedback under a used key.
        changes = [{"query": "a question sent once, then changed again"},
                   {"model": "smarty"}, {"correctness": 1}, {"correctness": False},
                   {"output_tokens": 13}, {"input_tokens": 91}, {"input_tokens": None}]
        for change in changes:
            body = dict(first, **change)
            st, h, data = request(gw.port, "POST", "/v1/feedback", json.dumps(body),
                                  {"Idempotency-Key": "fb-reused"})
            assert st == 422, (change, st, data)
            err = json.loads(data)["error"]
            assert (err["code"], err["type"], err["param"]) == (
                "idempotency_key_reused", "invalid_request_error", "Idempotency-Key"), err
            assert "'fb-reused' was already used for a feedback with a different body" \
                in err["message"], err
        assert history_records(gw.port) == before
        assert store_rows() == rows
        m = gw.metrics()
        assert m['llmroute_feedback_total{outcome="key_reused"}'] == reused0 + len(changes), m
        # The key still names the first feedback.
        st, _, data = request(gw.port, "POST", "/v1/feedback", json.dumps(first),
                              {"Idempotency-Key": "fb-reused"})
        assert (st, json.loads(data)["status"]) == (200, "already_recorded"), (st, data)
        # input_tokens absent is recorded as the estimate from the query: a
        # retry that leaves it out again is the same feedback.
        est = {"query": "a question whose tokens are estimated", "model": "smarty",
               "correctness": True, "output_tokens": 3}
        for i in range(2):
            st, _, data = request(gw.port, "POST", "/v1/feedback", json.dumps(est),
                                  {"Idempotency-Key": "fb-estimated"})
            want = "recorded" if i == 0 else "already_recorded"
            assert (st, json.loads(data)["status"]) == (200, want), (st, data)
    check("an Idempotency-Key reused with another body (query, model, correctness, "
          "output_tokens or input_tokens) is a 422 idempotency_key_reused, nothing stored; "
          "the same body in another form is already_recorded",
          key_reused_with_another_body_is_422)

    def keys_are_shared_by_gateways_on_one_file():
        other = Gateway(bin_, wd, config(store), name="gw2")
        st, j = feedback(other.port, "a keyed feedback question", "fb-0001")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        st, j = feedback(other.port, "sent to the second gateway", "fb-other")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        st, j = feedback(gw.port, "sent to the second gateway", "fb-other")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        assert j["records"] == history_records(other.port), j
    check("a second gateway on the same store knows the first one's keys, and back",
          keys_are_shared_by_gateways_on_one_file)

    def age_keys(seconds, key=None):
        """Make keys look `seconds` older in the store's file, as the
        passing of time would: the gateway reads each key's time from the
        file inside its write transaction."""
        c = sqlite3.connect(store, timeout=30)
        with c:
            if key is None:
                c.execute("UPDATE feedback_keys SET committed_at = committed_at - ?",
                          (seconds,))
            else:
                c.execute("UPDATE feedback_keys SET committed_at = committed_at - ?"
                          " WHERE key = ?", (seconds, key))
        c.close()

    def keys_in_store():
        c = sqlite3.connect(store, timeout=30)
        try:
            return c.execute("SELECT COUNT(*) FROM feedback_keys").fetchone()[0]
        finally:
            c.close()

    def key_is_forgotten_after_a_day():
        before = history_records(gw.port)
        st, j = feedback(gw.port, "a question retried a day late", "fb-aged")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        # Almost a day old (a minute's margin for this test's own time).
        age_keys(86400 - 60, "fb-aged")
        st, j = feedback(gw.port, "a question retried a day late", "fb-aged")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        assert history_records(gw.port) == before + 1
        # Over a day old: forgotten, so the retry records, and is
        # remembered again from now.
        age_keys(60, "fb-aged")
        st, j = feedback(gw.port, "a question retried a day late", "fb-aged")
        assert (st, j) == (200, {"status": "recorded", "records": before + 2}), (st, j)
        st, j = feedback(gw.port, "a question retried a day late", "fb-aged")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        assert history_records(gw.port) == before + 2
    check("an Idempotency-Key is remembered for 24 hours by default: a retry a minute before "
          "is already_recorded, one after records again", key_is_forgotten_after_a_day)

    def expired_keys_are_deleted_by_keyed_feedback():
        # Keys of long ago, as a long-running gateway would have gathered.
        c = sqlite3.connect(store, timeout=30)
        with c:
            c.executemany("INSERT INTO feedback_keys(key, record_id, committed_at)"
                          " VALUES(?, 0, 1000)", [("ancient-%d" % i,) for i in range(100)])
        c.close()
        live = keys_in_store() - 100
        for i in range(6):
            st, j = feedback(gw.port, "feedback that cleans up", "fb-clean-%d" % i)
            assert (st, j["status"]) == (200, "recorded"), (st, j)
        # 32 at most per feedback: after 6 (room for 192), only live keys.
        assert keys_in_store() == live + 6, (keys_in_store(), live)
        st, j = feedback(gw.port, "a question retried a day late", "fb-aged")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
    check("keyed feedback deletes expired keys, a bounded number each, until only live keys "
          "are left", expired_keys_are_deleted_by_keyed_feedback)

    def ttl_is_set_in_the_config_and_on_reload():
        cfg = config(store)
        cfg["server"] = {"feedback_key_ttl_s": 0}
        g = Gateway(bin_, wd, cfg, name="gw_forever")
        st, j = feedback(g.port, "kept for good", "fb-forever")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        age_keys(10 * 365 * 86400, "fb-forever")
        st, j = feedback(g.port, "kept for good", "fb-forever")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        # An hour, read again on SIGHUP.
        cfg["server"] = {"feedback_key_ttl_s": 3600}
        g.write_config(cfg)
        n = len(g.events("reloaded"))
        g.signal(signal.SIGHUP)
        wait_for(lambda: len(g.events("reloaded")) > n, timeout=10, what="the reload")
        st, j = feedback(g.port, "kept for an hour", "fb-hour")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        age_keys(3600 - 60, "fb-hour")
        st, j = feedback(g.port, "kept for an hour", "fb-hour")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        age_keys(60, "fb-hour")
        st, j = feedback(g.port, "kept for an hour", "fb-hour")
        assert (st, j["status"]) == (200, "recorded"), (st, j)
        # A key keeps the time-to-live it was committed with: the new
        # setting applies to new keys only.
        st, j = feedback(g.port, "kept for good", "fb-forever")
        assert (st, j["status"]) == (200, "already_recorded"), (st, j)
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("server.feedback_key_ttl_s sets how long keys are remembered (0: for good), and "
          "SIGHUP applies a new value", ttl_is_set_in_the_config_and_on_reload)

    def bad_ttl_values_are_config_errors():
        for i, bad in enumerate([-1, "3600", 1.5, True, [60], 3153600001]):
            cfg = config(store)
            cfg["server"] = {"feedback_key_ttl_s": bad}
            path = os.path.join(wd, "bad_ttl%d.json" % i)
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = subprocess.run([bin_, "serve", "--config", path, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
            assert "server.feedback_key_ttl_s: expected an integer from 0 to 3153600000" \
                in r.stderr, (bad, r.stderr)
        # NaN is not JSON: the file itself is refused.
        path = os.path.join(wd, "bad_ttl_nan.json")
        with open(path, "w") as f:
            f.write(json.dumps(config(store))[:-1] + ', "server": {"feedback_key_ttl_s": NaN}}')
        r = subprocess.run([bin_, "serve", "--config", path, "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (r.returncode, r.stderr)
    check("server.feedback_key_ttl_s that is not an integer from 0 to 3153600000 is a config "
          "error naming the key (exit 2), nothing started", bad_ttl_values_are_config_errors)

    def old_store_keeps_its_keys():
        old = os.path.join(wd, "old.db")
        import_ok(bin_, old, seed)
        c = sqlite3.connect(old)
        with c:
            c.executescript(
                "DROP TABLE IF EXISTS feedback_keys;"
                "CREATE TABLE feedback_keys(key TEXT PRIMARY KEY, record_id INTEGER NOT NULL);")
            # The keyed feedback of that time: its record, one outcome, and
            # the key naming it.
            n = c.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            c.execute("INSERT INTO records(id, query, input_tokens) VALUES(?, ?, 7)",
                      (n, "sent before the upgrade"))
            c.execute("INSERT INTO outcomes(record_id, model_id, correctness, output_tokens)"
                      " SELECT ?, id, 1, 5 FROM models WHERE name = 'cheapo'", (n,))
            c.execute("INSERT INTO feedback_keys(key, record_id)"
                      " VALUES('fb-before-the-upgrade', ?)", (n,))
        c.close()
        g = Gateway(bin_, wd, config(old), name="gw_old")
        st, _, data = request(g.port, "POST", "/v1/feedback",
                              json.dumps({"query": "sent before the upgrade", "input_tokens": 7,
                                          "model": "cheapo", "correctness": 1,
                                          "output_tokens": 5}),
                              {"Idempotency-Key": "fb-before-the-upgrade"})
        assert (st, json.loads(data)["status"]) == (200, "already_recorded"), (st, data)
        c = sqlite3.connect(old, timeout=30)
        cols = [r[1] for r in c.execute("PRAGMA table_info(feedback_keys)")]
        t = c.execute("SELECT committed_at FROM feedback_keys"
                      " WHERE key = 'fb-before-the-upgrade'").fetchone()[0]
        c.close()
        assert cols == ["key", "record_id", "committed_at", "ttl"], cols
        assert abs(t - time.time()) < 600, t  # the migration's time
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("a store made before key times is migrated by the gateway's open, its keys kept "
          "and dated from then", old_store_keeps_its_keys)

    def feedback_keys_guard_the_history():
        # server.feedback_api_keys_env: only its keys write the history every
        # smart route decides from; a client key still routes.
        env = {"LLMROUTE_IT_CLIENT_KEYS": "ck-one, ck-two",
               "LLMROUTE_IT_FEEDBACK_KEYS": "fk-one,fk-two\n"}
        cfg = config(store)
        cfg["server"] = {"api_keys_env": "LLMROUTE_IT_CLIENT_KEYS",
                         "feedback_api_keys_env": "LLMROUTE_IT_FEEDBACK_KEYS"}
        g = Gateway(bin_, wd, cfg, name="gw_fbkeys", env=env)
        body = json.dumps({"query": "who may write the history", "model": "cheapo",
                           "correctness": 1, "output_tokens": 5})
        route = json.dumps({"queries": [{"query": "q"}], "strategy": "sequential",
                            "models": ["cheapo"]})

        def post(key, path="/v1/feedback", data=body):
            headers = {"Authorization": "Bearer " + key} if key is not None else {}
            st, h, out = request(g.port, "POST", path, data, headers)
            return st, h, json.loads(out)

        before = history_records(g.port)
        st, h, j = post("ck-one")
        e = j["error"]
        assert (st, e["code"], e["type"]) == (403, "feedback_key_required",
                                              "permission_error"), (st, j)
        assert "server.feedback_api_keys_env" in e["message"], e
        for key in (None, "wrong", "fk-on"):
            st, h, j = post(key)
            assert (st, j["error"]["code"]) == (401, "invalid_api_key"), (key, st, j)
            assert h.get("www-authenticate") == "Bearer", h
            assert "server.feedback_api_keys_env" in j["error"]["message"], j
        assert history_records(g.port) == before
        for key in ("fk-one", "fk-two"):
            st, _, j = post(key)
            assert (st, j["status"]) == (200, "recorded"), (key, st, j)
        assert history_records(g.port) == before + 2
        # A client key routes; a feedback key opens /v1/feedback alone.
        assert post("ck-two", "/v1/route", route)[0] == 200
        assert post("fk-one", "/v1/route", route)[0] == 401
        # Feedback keys without client keys: every other path is open, and
        # /v1/feedback still takes only a feedback key.
        del cfg["server"]["api_keys_env"]
        g.write_config(cfg)
        g.signal(signal.SIGHUP)
        wait_for(lambda: post(None, "/v1/route", route)[0] == 200, what="the reload")
        for key in (None, "ck-one"):
            st, _, j = post(key)
            assert (st, j["error"]["code"]) == (401, "invalid_api_key"), (key, st, j)
        assert post("fk-two")[0] == 200
        # Unset again (SIGHUP), any client key writes feedback, as before it existed.
        cfg["server"] = {"api_keys_env": "LLMROUTE_IT_CLIENT_KEYS"}
        g.write_config(cfg)
        g.signal(signal.SIGHUP)
        wait_for(lambda: post("ck-one")[0] == 200, what="the reload without feedback keys")
        assert post(None)[0] == 401
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    check("server.feedback_api_keys_env: only its keys write feedback (a client key is 403 "
          "feedback_key_required, no key or another 401) and open nothing else; SIGHUP sets "
          "and unsets it", feedback_keys_guard_the_history)

    def feedback_keys_variable_is_checked():
        var = "LLMROUTE_IT_FEEDBACK_KEYS2"
        cfg = config(store)
        cfg["server"] = {"feedback_api_keys_env": var}
        path = os.path.join(wd, "fbkeys.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        for value, want in ((None, "server.feedback_api_keys_env: the environment variable "
                                   "%s is not set or empty" % var),
                            ("", "is not set or empty"),
                            (" , ", "server.feedback_api_keys_env: %s holds no key" % var)):
            env = dict(os.environ)
            env.pop(var, None)
            if value is not None:
                env[var] = value
            for cmd in (["check-config", path],
                        ["serve", "--config", path, "--listen", "127.0.0.1:0"]):
                r = subprocess.run([bin_] + cmd, capture_output=True, text=True, timeout=30,
                                   env=env)
                assert r.returncode == 2 and want in r.stderr, (value, cmd, r.returncode,
                                                                r.stderr)
        r = subprocess.run([bin_, "check-config", path], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, **{var: "fk1,,fk2"}))
        assert r.returncode == 0, r.stderr
        assert ("server.feedback_api_keys_env: %s: entry 2 of 3 is empty and is skipped"
                % var) in r.stderr, r.stderr
        cfg["server"] = {"feedback_api_keys_env": ""}
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([bin_, "check-config", path], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and "server.feedback_api_keys_env: expected the name of an " \
            "environment variable" in r.stderr, r.stderr
    check("server.feedback_api_keys_env naming an unset or empty variable, or one of empty "
          "entries, is refused by check-config and serve naming it",
          feedback_keys_variable_is_checked)

    finish()


if __name__ == "__main__":
    main(sys.argv[1])
