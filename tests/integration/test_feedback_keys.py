"""test_feedback_keys.py -- POST /v1/feedback with an Idempotency-Key: a
retried feedback (the client saw no 200) is stored once.

    python3 test_feedback_keys.py LLMROUTE

The first request with a key answers 200 "recorded", a repeat 200
"already_recorded" with nothing stored; a bad key is a 400 naming the
header. The keys are in the store's file: a restarted gateway, and a second
gateway on the same file, know them.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwtest import (Gateway, check, finish, history_records, import_ok, request,  # noqa
                    smart_config as config, smart_history as history, workdir)

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

    finish()


if __name__ == "__main__":
    main(sys.argv[1])
