#!/usr/bin/env bash
# End-to-end tests of the remote embedder (router.embedding): `llmroute
# import`, `route --strategy smart` and `eval` fetch vectors from the fake
# upstream's POST /v1/embeddings (deterministic vectors from a hash of each
# text) on 127.0.0.1, into a dense store. Then the errors: the server down
# (exit 1 naming the URL, store unchanged; a store the failed import created
# removed again), a wrong dimension, a non-200
# answer, an answer that is not JSON or holds a raw NUL byte (from a server
# of the script's own, start_raw), a built-in store opened with the
# remote config, and the gateway refusing a dense store without router.embedding.
#   usage: test_embed_remote.sh /path/to/llmroute /path/to/source /path/to/fake_upstream
set -u
BIN=$1
FAKE=${3:-}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1
. "$(dirname "$0")/lib.sh"

if [ -z "$FAKE" ] || [ ! -x "$FAKE" ]; then
    echo "FAIL: the fake upstream's path is the third argument"
    exit 1
fi

# The store's meta and row counts, read with Python's sqlite3.
store_facts() {
    python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
meta = dict(db.execute("SELECT key, value FROM meta"))
n = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
v = db.execute("SELECT COUNT(*), COALESCE(MIN(LENGTH(vec)), 0) FROM vectors").fetchone()
print("%s dim=%s records=%d vectors=%d bytes=%d" % (meta["embedder"], meta["dim"], n, v[0], v[1]))
PY
}

# start_fake NAME ARGS...: start a fake upstream on a port the OS picks; sets
# PORT. Every wait is bounded.
start_fake() {
    local name=$1
    shift
    "$FAKE" --listen 127.0.0.1:0 --port-file "$TMP/$name.port" --log "$TMP/$name.log" "$@" \
        2>"$TMP/$name.err" &
    PIDS+=($!)
    for _ in $(seq 100); do
        [ -s "$TMP/$name.port" ] && break
        sleep 0.05
    done
    PORT=$(cat "$TMP/$name.port" 2>/dev/null)
    if [ -z "$PORT" ]; then
        echo "FAIL: the fake upstream $name did not start: $(cat "$TMP/$name.err")"
        exit 1
    fi
}

# scenario PORT SPEC: set the fake upstream's default scenario.
scenario() {
    python3 - "$1" "$2" <<'PY' || bad "setting scenario $2"
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("POST", "/_control", json.dumps({"scenario": sys.argv[2]}))
assert c.getresponse().status == 200
PY
}

# start_raw NAME AFTER BYTES: start an embedding server of the test's own
# that answers each request 200 with one vector of 16 numbers per input,
# BYTES (Python escapes: '\0') spliced into the answer's body after the
# first AFTER in it, the rest of the answer as it was; and write
# $TMP/NAME.json, remote.json with its base_url. For the answers the fake
# upstream cannot send.
start_raw() {
    local name=$1
    python3 - "$TMP" "$name" "$2" "$3" <<'PY' &
import ast, json, os, socket, sys
tmp, name, after, splice = sys.argv[1], sys.argv[2], sys.argv[3].encode(), \
    ast.literal_eval("b'%s'" % sys.argv[4])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
c = json.load(open(tmp + "/remote.json"))
c["router"]["embedding"]["base_url"] = "http://127.0.0.1:%d/v1" % s.getsockname()[1]
json.dump(c, open(tmp + "/" + name + ".json", "w"))
open(tmp + "/" + name + ".port.tmp", "w").write(str(s.getsockname()[1]))
os.rename(tmp + "/" + name + ".port.tmp", tmp + "/" + name + ".port")
s.settimeout(120)
while True:
    try:
        conn, _ = s.accept()
    except OSError:
        break
    conn.settimeout(10)
    req = b""
    while b"\r\n\r\n" not in req:
        req += conn.recv(65536)
    head, body = req.split(b"\r\n\r\n", 1)
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
              if l.lower().startswith(b"content-length:")][0]
    while len(body) < length:
        body += conn.recv(65536)
    n = len(json.loads(body)["input"])
    answer = json.dumps({"object": "list", "model": "fake-emb", "data": [
        {"object": "embedding", "index": i, "embedding": [1 + i] + [0.5] * 15}
        for i in range(n)]}, separators=(",", ":")).encode()
    k = answer.index(after) + len(after)
    answer = answer[:k] + splice + answer[k:]
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 b"%d\r\nConnection: close\r\n\r\n" % len(answer) + answer)
    conn.close()
PY
    PIDS+=($!)
    for _ in $(seq 100); do
        [ -s "$TMP/$name.port" ] && break
        sleep 0.05
    done
    [ -s "$TMP/$name.port" ] || { echo "FAIL: the raw server $name did not start"; exit 1; }
}

# A port on 127.0.0.1 that nothing listens on.
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

start_fake emb --embedding-dim 16
EMB_PORT=$PORT
start_fake emb8 --embedding-dim 8
EMB8_PORT=$PORT

# A fixture: three topics; "strong" is right on all, "mid" on arithmetic and
# geography, "cheap" on arithmetic only. Configs for each server.
python3 - "$TMP" "$EMB_PORT" "$EMB8_PORT" "$CLOSED" <<'PY'
import json, sys
out, port, port8, closed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
topics = {
    "math": ["What is %d plus %d?" % (a, a + 3) for a in range(12)],
    "geo": ["Which river flows through capital number %d of the atlas?" % i for i in range(12)],
    "code": ["Write a python function named f%d that sorts a list" % i for i in range(12)],
}
right = {"strong": {"math", "geo", "code"}, "mid": {"math", "geo"}, "cheap": {"math"}}
recs = []
for topic, qs in topics.items():
    for i, q in enumerate(qs):
        recs.append({"query": q, "input_token_length": 12, "split": "test" if i % 3 == 0 else "train",
                     "outputs": [{"model_name": m, "correctness": topic in right[m],
                                  "output_token_length": 20} for m in right]})
json.dump(recs, open(out + "/data.json", "w"))
json.dump(recs[:3], open(out + "/more.json", "w"))
models = [{"name": "strong", "cost_per_input_token": 1e-5, "cost_per_output_token": 3e-5},
          {"name": "mid", "cost_per_input_token": 1e-6, "cost_per_output_token": 2e-6},
          {"name": "cheap", "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7}]
def cfg(name, url, **emb):
    e = {"base_url": url, "model": "fake-emb", "batch_size": 5}
    e.update(emb)
    json.dump({"models": models, "router": {"strategy": "smart", "n_similar": 1,
                                           "predictor": "aios", "embedding": e},
               "routes": [{"name": "auto", "strategy": "smart"}]},
              open(out + "/" + name, "w"))
cfg("remote.json", "http://127.0.0.1:%s/v1/" % port, api_key_env="LR_TEST_EMB_KEY")
cfg("down.json", "http://127.0.0.1:%s/v1" % closed)
cfg("down12.json", "http://127.0.0.1:%s/v1" % closed, dimensions=12)
cfg("dim8.json", "http://127.0.0.1:%s/v1" % port8)
cfg("dims12.json", "http://127.0.0.1:%s/v1" % port, dimensions=12)
cfg("conf8.json", "http://127.0.0.1:%s/v1" % port, dimensions=8)
json.dump({"models": models, "router": {"strategy": "smart"}}, open(out + "/builtin.json", "w"))
# The train records' queries and what each model got right on them.
with open(out + "/probe.txt", "w") as f:
    for r in recs:
        if r["split"] == "train":
            f.write(json.dumps({"query": r["query"], "correct": {o["model_name"]: o["correctness"] for o in r["outputs"]}}) + "\n")
PY
DENSE=$TMP/dense.db
export LR_TEST_EMB_KEY=sekret-emb-key

# ---- import: batches through the server, a dense store ----
expect import_remote 0 "imported 24 of 36 records" -- \
    "$BIN" import --config "$TMP/remote.json" --store "$DENSE" --split train "$TMP/data.json"
facts=$(store_facts "$DENSE")
[ "$facts" = "openai:fake-emb dim=16 records=24 vectors=24 bytes=64" ] && ok ||
    bad "dense store: $facts"
python3 - "$TMP/emb.log" <<'PY' && ok || bad "import requests: see above"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
bodies = [json.loads(r["body"]) for r in reqs]
assert all(r["path"] == "/v1/embeddings" for r in reqs), reqs
assert all(b["model"] == "fake-emb" and "dimensions" not in b for b in bodies), bodies
assert all(r["headers"].get("authorization") == "Bearer sekret-emb-key" for r in reqs), reqs[0]
# One probe for the dimension, then the 24 queries in batches of at most 5.
sizes = [len(b["input"]) for b in bodies]
assert sizes == [1, 5, 5, 5, 5, 4], sizes
PY

# ---- route: the query's vector comes from the server ----
# With n_similar 1 and the aios predictor, each model's predicted quality is
# its correctness on the one nearest record: an identical text must find its
# own record first (hash vectors put every other text far away).
: >"$TMP/emb.log"
python3 - "$BIN" "$TMP" "$DENSE" <<'PY' && ok || bad "route finds each query's own record"
import json, subprocess, sys
binary, tmp, store = sys.argv[1:4]
probes = [json.loads(l) for l in open(tmp + "/probe.txt")][::4]
out = subprocess.run([binary, "route", "--config", tmp + "/remote.json", "--store", store,
                      "--strategy", "smart", "--json"] + [p["query"] for p in probes],
                     capture_output=True, text=True, timeout=60)
assert out.returncode == 0, out.stderr
lines = out.stdout.splitlines()
assert len(lines) == len(probes), out.stdout
for p, line in zip(probes, lines):
    d = json.loads(line)
    got = {c["model"]: c["predicted_quality"] for c in d["ranking"]}
    want = {m: 1.0 if c else 0.0 for m, c in p["correct"].items()}
    assert got == want, (p["query"], got, want)
    cheapest_right = [m for m in ("cheap", "mid", "strong") if p["correct"][m]][0]
    assert d["model"] == cheapest_right, (p["query"], d["model"])
reqs = [json.loads(l) for l in open(tmp + "/emb.log")]
inputs = [q for r in reqs for q in json.loads(r["body"])["input"]]
assert inputs == [p["query"] for p in probes], inputs  # one batch of 5, one of 1
assert [len(json.loads(r["body"])["input"]) for r in reqs] == [5, 1]
PY

# ---- eval: every test query embedded up front, in batches ----
: >"$TMP/emb.log"
expect eval_remote 0 "embedded 12 queries with openai:fake-emb" -- \
    "$BIN" eval --config "$TMP/remote.json" --store "$DENSE" --data "$TMP/data.json" \
    --split test --format json
python3 - "$TMP/out" "$TMP/emb.log" <<'PY' && ok || bad "eval output or requests"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["queries"] == 12, r["queries"]
smart = [x for x in r["results"] if x["strategy"] == "smart"]
assert smart and all(0 <= x["success_rate"] <= 1 for x in smart), smart
sizes = [len(json.loads(json.loads(l)["body"])["input"]) for l in open(sys.argv[2])]
assert sizes == [5, 5, 2], sizes
PY

# ---- the server down: exit 1 naming the URL, the store unchanged ----
# Compared by its facts: `count` (import --store without the config) opens
# a dense store with the built-in embedder, which it refuses, and prints
# nothing, so a comparison of two counts held whatever happened.
before=$(store_facts "$DENSE")
[ "$before" = "openai:fake-emb dim=16 records=24 vectors=24 bytes=64" ] && ok ||
    bad "dense store before the failures: $before"
expect import_down 1 "http://127.0.0.1:$CLOSED/v1/embeddings" -- \
    "$BIN" import --config "$TMP/down.json" --store "$DENSE" "$TMP/more.json"
grep -qF "nothing imported" "$TMP/err" && ok || bad "import_down: $(cat "$TMP/err")"
[ "$(store_facts "$DENSE")" = "$before" ] && ok ||
    bad "store changed after a failed import: $(store_facts "$DENSE")"
expect route_down 1 "cannot reach the embedding server at http://127.0.0.1:$CLOSED/v1/embeddings" -- \
    "$BIN" route --config "$TMP/down.json" --store "$DENSE" "What is 1 plus 4?"
expect eval_down 1 "http://127.0.0.1:$CLOSED/v1/embeddings" -- \
    "$BIN" eval --config "$TMP/down.json" --store "$DENSE" --data "$TMP/data.json" --split test

# ---- a failed import into a store it created leaves nothing behind ----
# Not an empty store stamped with that embedder, which would refuse a later
# import with another. Down at the dimension probe, and (with a configured
# dimension, no probe) down during the import itself.
for conf in down down12; do
    NEW=$TMP/new-$conf.db
    expect "import_down_new_$conf" 1 "removed '$NEW', which this command created" -- \
        "$BIN" import --config "$TMP/$conf.json" --store "$NEW" "$TMP/more.json"
    grep -qF "nothing imported" "$TMP/err" && ok || bad "import_down_new_$conf: $(cat "$TMP/err")"
    [ ! -e "$NEW" ] && [ ! -e "$NEW-wal" ] && [ ! -e "$NEW-shm" ] && ok ||
        bad "a failed import left $(ls "$TMP" | grep "new-$conf")"
    expect "import_builtin_after_$conf" 0 "imported 3 of 3" -- \
        "$BIN" import --store "$NEW" "$TMP/more.json"
done
# A store that existed before the command (here empty) is kept.
expect import_create_empty 0 "0 records" -- \
    "$BIN" import --config "$TMP/remote.json" --store "$TMP/empty.db"
expect import_down_existing 1 "nothing imported" -- \
    "$BIN" import --config "$TMP/down.json" --store "$TMP/empty.db" "$TMP/more.json"
[ -e "$TMP/empty.db" ] && ! grep -qF "removed" "$TMP/err" && ok ||
    bad "a store that existed was removed: $(cat "$TMP/err")"

# ---- wrong dimensions ----
# The server answers 8 floats where the store holds 16.
expect route_wrong_dim 1 "returned vectors of dimension 8, expected 16" -- \
    "$BIN" route --config "$TMP/dim8.json" --store "$DENSE" "What is 1 plus 4?"
expect import_wrong_dim 1 "returned vectors of dimension 8, expected 16" -- \
    "$BIN" import --config "$TMP/dim8.json" --store "$DENSE" "$TMP/more.json"
[ "$(store_facts "$DENSE")" = "$before" ] && ok || bad "store changed after a wrong dimension"
# A configured dimension that differs from the store's.
expect open_conf_dim 1 "holds vectors of dimension 16, not 8 as configured" -- \
    "$BIN" route --config "$TMP/conf8.json" --store "$DENSE" "What is 1 plus 4?"
# A configured dimension is sent to the server and becomes a new store's.
: >"$TMP/emb.log"
expect import_dims12 0 "imported 3 of 3" -- \
    "$BIN" import --config "$TMP/dims12.json" --store "$TMP/d12.db" "$TMP/more.json"
[ "$(store_facts "$TMP/d12.db")" = "openai:fake-emb dim=12 records=3 vectors=3 bytes=48" ] && ok ||
    bad "dimensions 12: $(store_facts "$TMP/d12.db")"
grep -qF '\"dimensions\":12' "$TMP/emb.log" && ok || bad "dimensions not sent: $(cat "$TMP/emb.log")"
[ "$(grep -c . "$TMP/emb.log")" = 1 ] && ok || bad "a configured dimension needs no probe"

# ---- the server's own errors ----
scenario "$EMB_PORT" 'status=401;message=Incorrect%20API%20key%20provided'
expect route_401 1 "answered HTTP 401: Incorrect API key provided" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$DENSE" "What is 1 plus 4?"
# A redirect is not followed; the message says so and names its Location
# and the key to fix (it was "answered HTTP 301: " and the body's text).
scenario "$EMB_PORT" 'status=301;location=https://example.com/v1/embeddings'
expect route_redirect 1 "answered HTTP 301, a redirect to 'https://example.com/v1/embeddings'; redirects are not followed: check router.embedding.base_url" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$DENSE" "What is 1 plus 4?"
scenario "$EMB_PORT" 'malformed_after=0'
expect route_not_json 1 "the answer is not JSON" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$DENSE" "What is 1 plus 4?"
# An answer that breaks off mid-body: the server was reached (it said
# "cannot reach the embedding server").
scenario "$EMB_PORT" 'cut_after=0'
expect route_cut_body 1 "embedding server at http://127.0.0.1:$EMB_PORT/v1/embeddings: its answer (HTTP 200) broke off" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$DENSE" "What is 1 plus 4?"
# An error body that is not text: no control character or stray byte of
# it reaches the terminal.
python3 - "$TMP" "$TMP/remote.json" <<'PY' &
import json, socket, sys
tmp, conf = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
c = json.load(open(conf))
c["router"]["embedding"]["base_url"] = "http://127.0.0.1:%d/v1" % s.getsockname()[1]
json.dump(c, open(tmp + "/raw500.json", "w"))
open(tmp + "/raw500.port", "w").write("ok")
s.settimeout(60)
body = b"bad \xff\xfe \x1b[31mred\x07 bytes"
while True:
    try:
        conn, _ = s.accept()
    except OSError:
        break
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 500 X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)
    conn.close()
PY
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/raw500.port" ] && break; sleep 0.05; done
expect route_raw_error_body 1 "answered HTTP 500: bad ??  [31mred  bytes" -- \
    "$BIN" route --config "$TMP/raw500.json" --store "$DENSE" "What is 1 plus 4?"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f-\xff]' "$TMP/err" &&
    bad "an error body's raw bytes reached stderr: $(od -c "$TMP/err" | head)" || ok
# Vectors of zeros point nowhere: the server's fault (exit 1, naming it),
# not the query's (it was exit 2, "the query's embedding is zero").
scenario "$EMB_PORT" zero_vectors
ZERO_MSG="embedding server at http://127.0.0.1:$EMB_PORT/v1/embeddings: data[0].embedding is a zero vector"
expect route_zero_vector 1 "$ZERO_MSG" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$DENSE" "What is 1 plus 4?"
expect eval_zero_vector 1 "$ZERO_MSG" -- \
    "$BIN" eval --config "$TMP/remote.json" --store "$DENSE" --data "$TMP/data.json" --split test
expect import_zero_vector 1 "$ZERO_MSG" -- \
    "$BIN" import --config "$TMP/remote.json" --store "$DENSE" "$TMP/more.json"
[ "$(store_facts "$DENSE")" = "$before" ] && ok || bad "store changed after zero vectors"
scenario "$EMB_PORT" ok

# ---- a 200 whose body is an error object ----
# (as some proxies answer a quota): its message is the reason; it was "the
# answer has no "data" array".
python3 - "$TMP/err200.port" <<'PY' &
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"message": "quota exceeded", "code": 402}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
PY
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/err200.port" ] && break; sleep 0.05; done
ERR200_PORT=$(cat "$TMP/err200.port" 2>/dev/null)
python3 - "$TMP" "$ERR200_PORT" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1] + "/remote.json"))
cfg["router"]["embedding"]["base_url"] = "http://127.0.0.1:%s/v1" % sys.argv[2]
json.dump(cfg, open(sys.argv[1] + "/err200.json", "w"))
PY
expect route_200_error 1 "embedding server at http://127.0.0.1:$ERR200_PORT/v1/embeddings answered HTTP 200 with an error: quota exceeded" -- \
    "$BIN" route --config "$TMP/err200.json" --store "$DENSE" "What is 1 plus 4?"

# ---- an answer holding a raw NUL byte ----
# No JSON text holds one (a string writes the character as \u0000), but
# jansson reads past one after a number: route used the vector, and import
# stored it. Refused, naming the NUL's place; nothing stored. (In a string
# jansson refused it in its own words, "\u0000 is not allowed".)
start_raw nul '"embedding":[1' '\0'
NUL_MSG="embedding server at http://127.0.0.1:$(cat "$TMP/nul.port")/v1/embeddings: the answer is not JSON: a NUL byte at line 1, column "
expect route_nul 1 "${NUL_MSG}91 (JSON text holds none" -- \
    "$BIN" route --config "$TMP/nul.json" --store "$DENSE" "What is 1 plus 4?"
NEW=$TMP/new-nul.db
expect import_nul 1 "${NUL_MSG}91 (JSON text holds none" -- \
    "$BIN" import --config "$TMP/nul.json" --store "$NEW" "$TMP/more.json"
grep -qF "nothing imported" "$TMP/err" && [ ! -e "$NEW" ] && ok ||
    bad "import_nul stored something: $(cat "$TMP/err"; ls "$TMP" | grep new-nul)"
expect import_nul_dense 1 "${NUL_MSG}91 (JSON text holds none" -- \
    "$BIN" import --config "$TMP/nul.json" --store "$DENSE" "$TMP/more.json"
[ "$(store_facts "$DENSE")" = "$before" ] && ok ||
    bad "store changed after an answer with a NUL: $(store_facts "$DENSE")"
start_raw nulstr '"object":"embed' '\0'
expect route_nul_string 1 "the answer is not JSON: a NUL byte at line 1, column 61 (JSON text holds none" -- \
    "$BIN" route --config "$TMP/nulstr.json" --store "$DENSE" "What is 1 plus 4?"

# ---- a stop signal while a request waits on the server ----
# SIGTERM stops import at once, not after router.embedding.timeout_ms (here
# 10 minutes; it waited that long): nothing imported, a store it created
# removed, and it dies of the signal. SIGTERM, since a background job of a
# shell script ignores SIGINT.
start_fake hang --embedding-dim 16 --scenario hang
HANG_PORT=$PORT
python3 - "$TMP" "$HANG_PORT" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1] + "/remote.json"))
cfg["router"]["embedding"].update(base_url="http://127.0.0.1:%s/v1" % sys.argv[2],
                                  timeout_ms=600000)
json.dump(cfg, open(sys.argv[1] + "/hang.json", "w"))
PY
# stop_import NAME STORE: import more.json into STORE under hang.json, send
# SIGTERM once the server has the request (its log has a line more), and
# wait for the command to end (bounded); sets RC.
stop_import() {
    local name=$1 store=$2 logged pid
    logged=$(grep -c . "$TMP/hang.log" 2>/dev/null)
    "$BIN" import --config "$TMP/hang.json" --store "$store" "$TMP/more.json" \
        >"$TMP/out" 2>"$TMP/err" </dev/null &
    pid=$!
    for _ in $(seq 200); do
        [ "$(grep -c . "$TMP/hang.log" 2>/dev/null)" -gt "${logged:-0}" ] && break
        sleep 0.05
    done
    kill -TERM "$pid"
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        bad "$name: still waiting on the server 30 s after SIGTERM"
    fi
    wait "$pid"
    RC=$?
}
stop_import import_stopped_waiting "$DENSE"
[ "$RC" = 143 ] && grep -qF "more.json: the import was stopped: nothing imported" "$TMP/err" &&
    ok || bad "import_stopped_waiting: exit $RC: $(cat "$TMP/err")"
[ "$(store_facts "$DENSE")" = "$before" ] && ok || bad "store changed after a stopped import"
# Stopped at the dimension probe of a store it created: removed.
stop_import import_stopped_probe "$TMP/stopped.db"
[ "$RC" = 143 ] && grep -qF "stopped by a signal while waiting for the embedding server at http://127.0.0.1:$HANG_PORT/v1/embeddings: nothing imported" "$TMP/err" &&
    ok || bad "import_stopped_probe: exit $RC: $(cat "$TMP/err")"
[ ! -e "$TMP/stopped.db" ] && ok || bad "a stopped import left the store it created"

# ---- a built-in store and the remote config do not mix ----
expect import_builtin 0 "imported 24 of 36" -- \
    "$BIN" import --store "$TMP/tfidf.db" --split train "$TMP/data.json"
expect route_builtin_with_remote 1 \
    "built with embedder 'tfidf-v1' but is opened with 'openai:fake-emb'" -- \
    "$BIN" route --config "$TMP/remote.json" --store "$TMP/tfidf.db" "What is 1 plus 4?"
expect import_remote_into_builtin 1 "built with embedder 'tfidf-v1'" -- \
    "$BIN" import --config "$TMP/remote.json" --store "$TMP/tfidf.db" "$TMP/more.json"
expect route_dense_without_config 1 "built with embedder 'openai:fake-emb'" -- \
    "$BIN" route --config "$TMP/builtin.json" --store "$DENSE" "What is 1 plus 4?"
# The built-in embedder stays the default and needs no server.
expect route_builtin 0 "" -- \
    "$BIN" route --config "$TMP/builtin.json" --store "$TMP/tfidf.db" "What is 11 plus 14?"

# ---- long texts: router.embedding.max_input_chars ----
# A server that refuses an input over 64 characters (as TEI refuses one over
# its token limit) and one that refuses over 8192. Texts of 600 characters,
# with two- and four-byte characters around each cut.
start_fake cap64 --embedding-dim 16 --embed-max-chars 64
CAP64_PORT=$PORT
start_fake cap8k --embedding-dim 16 --embed-max-chars 8192
CAP8K_PORT=$PORT
python3 - "$TMP" "$CAP64_PORT" "$CAP8K_PORT" <<'PY'
import json, sys
out, port64, port8k = sys.argv[1], sys.argv[2], sys.argv[3]
pad = " \u00e9\U0001F600" * 200
recs = []
for i in range(8):
    for topic, q, right in (("math", "What is %d plus %d? Answer in words." % (i, i + 3), 1),
                            ("code", "Write a python function parse_%d that reads a csv" % i, 0)):
        recs.append({"query": q + pad, "input_token_length": 12, "outputs": [
            {"model_name": "strong", "correctness": 1, "output_token_length": 20},
            {"model_name": "cheap", "correctness": right, "output_token_length": 20}]})
json.dump(recs, open(out + "/long.json", "w"))
models = [{"name": "strong", "cost_per_input_token": 1e-5, "cost_per_output_token": 3e-5},
          {"name": "cheap", "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7}]
def cfg(name, port, **emb):
    e = {"base_url": "http://127.0.0.1:%s/v1" % port, "model": "fake-emb"}
    e.update(emb)
    json.dump({"models": models, "router": {"strategy": "smart", "n_similar": 1,
                                           "predictor": "aios", "embedding": e}},
              open(out + "/" + name, "w"))
cfg("cap64.json", port64, max_input_chars=64)
cfg("uncut.json", port64, max_input_chars=0)
cfg("default8k.json", port8k)
for name, v in (("neg", -1), ("real", 64.5), ("str", "64"), ("huge", 2000000)):
    cfg("bad-%s.json" % name, port64, max_input_chars=v)
PY
# Sent whole, the texts are refused: the failure this setting prevents.
expect import_uncut 1 "answered HTTP 413" -- \
    "$BIN" import --config "$TMP/uncut.json" --store "$TMP/uncut.db" "$TMP/long.json"
grep -qF "Input validation error" "$TMP/err" && ok || bad "import_uncut: $(cat "$TMP/err")"
: >"$TMP/cap64.log"
expect import_cut 0 "imported 16 of 16" -- \
    "$BIN" import --config "$TMP/cap64.json" --store "$TMP/cap.db" "$TMP/long.json"
python3 - "$BIN" "$TMP" <<'PY' && ok || bad "the cut at import and at routing"
import json, subprocess, sys
binary, tmp = sys.argv[1:3]
def inputs():
    return [i for l in open(tmp + "/cap64.log")
            for i in json.loads(json.loads(l)["body"])["input"]]
texts = [r["query"] for r in json.load(open(tmp + "/long.json"))]
sent = inputs()
assert sent[1:] == [t[:64] for t in texts], sent[:3]  # after the dimension probe
# A long query is cut the same way, so it finds its own record's vector.
n = len(inputs())
out = subprocess.run([binary, "route", "--config", tmp + "/cap64.json", "--store",
                      tmp + "/cap.db", "--json", texts[2], texts[3]],
                     capture_output=True, text=True, timeout=60)
assert out.returncode == 0, out.stderr
got = [json.loads(l)["model"] for l in out.stdout.splitlines()]
assert got == ["cheap", "strong"], got
assert inputs()[n:] == [texts[2][:64], texts[3][:64]], inputs()[n:]
PY
# The default cut, 8192 characters: a query of 10,000 routes.
: >"$TMP/cap8k.log"
expect import_default_cut 0 "imported 16 of 16" -- \
    "$BIN" import --config "$TMP/default8k.json" --store "$TMP/cap8k.db" "$TMP/long.json"
LONGQ=$(python3 -c 'print("What is 2 plus 5? " + "x" * 9982)')
expect route_default_cut 0 "" -- \
    "$BIN" route --config "$TMP/default8k.json" --store "$TMP/cap8k.db" "$LONGQ"
python3 - "$TMP/cap8k.log" <<'PY' && ok || bad "the default cut"
import json, sys
sent = [i for l in open(sys.argv[1]) for i in json.loads(json.loads(l)["body"])["input"]]
assert len(sent[-1]) == 8192 and sent[-1].startswith("What is 2 plus 5? x"), len(sent[-1])
PY
# Bad values are refused naming the key, by check-config and serve (exit 2).
for v in neg real str huge; do
    expect "check_config_max_input_chars_$v" 2 \
        "router.embedding.max_input_chars: expected an integer from 0 to 1048576" -- \
        "$BIN" check-config "$TMP/bad-$v.json" --store "$TMP/cap.db"
done
expect serve_max_input_chars_neg 2 "router.embedding.max_input_chars" -- \
    timeout 20 "$BIN" serve --config "$TMP/bad-neg.json" --store "$TMP/cap.db" --listen 127.0.0.1:0

# ---- the gateway: smart routes over a dense store need router.embedding ----
# (Serving with it is tested in tests/integration/test_gateway_smart.py.)
expect serve_dense_without_embedder 2 "was built with embedder 'openai:fake-emb'" -- \
    timeout 20 "$BIN" serve --config "$TMP/builtin.json" --store "$DENSE" --listen 127.0.0.1:0

echo "test_embed_remote: $pass passed, $fail failed"
[ "$fail" = 0 ]
