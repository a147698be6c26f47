#!/usr/bin/env bash
# Checks the fake upstream itself: response shapes, streaming, the fault
# scenarios the gateway tests rely on, the control endpoint and the request log.
# Usage: test_fake_upstream.sh PATH/TO/fake_upstream
# Starts the server on 127.0.0.1 port 0, bounds every wait, and stops it on exit.
set -u

BIN=${1:?usage: test_fake_upstream.sh PATH/TO/fake_upstream}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fake_upstream_test.XXXXXX")
PID=""
FAILS=0

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; FAILS=$((FAILS + 1)); }
check() { # check NAME COMMAND...
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

"$BIN" --listen 127.0.0.1:0 --port-file "$WORK/port" --log "$WORK/log.jsonl" --name t1 \
    2>"$WORK/stderr" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
if [ ! -s "$WORK/port" ]; then
    echo "FAIL - server did not write its port file"; cat "$WORK/stderr"; exit 1
fi
PORT=$(cat "$WORK/port")
BASE="http://127.0.0.1:$PORT"
CHAT="$BASE/v1/chat/completions"
CURL=(curl -s --max-time 5 -H 'Content-Type: application/json')

control() { "${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/_control" -d "$1"; }

# ---- a plain chat completion has the OpenAI shape ----
"${CURL[@]}" "$CHAT" -d '{"model":"m-plain","messages":[{"role":"user","content":"hi"}]}' \
    >"$WORK/plain.json"
check "non-stream chat completion shape" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["object"] == "chat.completion" and r["id"] and isinstance(r["created"], int)
assert r["model"] == "m-plain"
c = r["choices"][0]
assert c["message"]["role"] == "assistant" and c["message"]["content"] == "tok0 tok1 tok2"
assert c["finish_reason"] == "stop"
u = r["usage"]
assert u["completion_tokens"] == 3 and u["total_tokens"] == u["prompt_tokens"] + 3
' "$WORK/plain.json"

# ---- a stream: role chunk, deltas, finish, usage chunk, [DONE] last ----
"${CURL[@]}" -N "$CHAT" -d '{"model":"m-s","stream":true,"stream_options":{"include_usage":true},
    "messages":[]}' -H 'x-fake-scenario: chunks=4' >"$WORK/stream.txt"
check "stream events in order, usage chunk, [DONE] last" python3 -c '
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("\n\n")
events = [e for e in raw.split("\n\n") if e]
assert all(e.startswith("data: ") for e in events), events
data = [e[6:] for e in events]
assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
chunks = [json.loads(d) for d in data[:-1]]
assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m-s" for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
deltas = [c["choices"][0]["delta"]["content"] for c in chunks[1:5]]
assert deltas == ["tok0", " tok1", " tok2", " tok3"], deltas
assert chunks[5]["choices"][0]["finish_reason"] == "stop"
assert chunks[6]["choices"] == [] and chunks[6]["usage"]["completion_tokens"] == 4
assert len(chunks) == 7
' "$WORK/stream.txt"

"${CURL[@]}" -N "$CHAT" -d '{"model":"m","stream":true}' >"$WORK/stream2.txt"
check "no usage chunk without include_usage" python3 -c '
import json, sys
data = [e[6:] for e in open(sys.argv[1]).read().split("\n\n") if e]
assert data[-1] == "[DONE]"
assert all("usage" not in json.loads(d) for d in data[:-1])
' "$WORK/stream2.txt"

# Chunks arrive over time, not in one piece at the end: the reader itself
# makes the request so it timestamps each event as it arrives.
check "stream chunks are flushed one by one" python3 -c '
import http.client, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
conn.request("POST", "/v1/chat/completions", body=b"{\"model\":\"m\",\"stream\":true}",
             headers={"x-fake-scenario": "chunks=3;chunk_delay_ms=150"})
resp = conn.getresponse()
assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
stamps = []
while True:
    line = resp.readline()
    if not line:
        break
    if line.startswith(b"data: "):
        stamps.append(time.monotonic())
gaps = [b - a for a, b in zip(stamps, stamps[1:])]
# A loaded machine may let the reader fall behind and read two buffered
# events back to back, so ask for spread, not for every gap: the events span
# most of the 5 x 150 ms, and most gaps are real waits.
assert len(stamps) == 6, stamps
assert stamps[-1] - stamps[0] > 0.5 and sum(g > 0.05 for g in gaps) >= 3, gaps
' "$PORT"

# ---- status=429 with Retry-After and an OpenAI error body ----
code=$("${CURL[@]}" -D "$WORK/h429" -o "$WORK/b429" -w '%{http_code}' \
    -H 'x-fake-scenario: status=429;retry_after=3' "$CHAT" -d '{"model":"m"}')
check "status=429 answers 429" test "$code" = 429
check "status=429 sends Retry-After: 3" grep -qi '^retry-after: 3' "$WORK/h429"
check "error body is OpenAI-shaped" python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert set(e) == {"message", "type", "param", "code"} and e["param"] is None
assert e["code"] == "rate_limit_exceeded"
' "$WORK/b429"

code=$("${CURL[@]}" -o "$WORK/b400" -w '%{http_code}' \
    -H 'x-fake-scenario: status=400;code=context_length_exceeded' "$CHAT" -d '{}')
check "status=400 with code=context_length_exceeded" python3 -c '
import json, sys
assert sys.argv[2] == "400"
assert json.load(open(sys.argv[1]))["error"]["code"] == "context_length_exceeded"
' "$WORK/b400" "$code"

# ---- status=301 with location=: a redirect with its Location ----
code=$("${CURL[@]}" -D "$WORK/h301" -o /dev/null -w '%{http_code}' \
    -H 'x-fake-scenario: status=301;location=https://example.com/v1/x%3By' "$CHAT" -d '{}')
check "status=301 answers 301" test "$code" = 301
check "status=301 sends Location" grep -qi '^location: https://example.com/v1/x;y' "$WORK/h301"

code=$("${CURL[@]}" -o "$WORK/bbad" -w '%{http_code}' "$CHAT" -d '{"model": nope')
check "malformed request JSON answers 400" test "$code" = 400

# ---- hang: no answer within a bounded wait ----
curl -s --max-time 1 -H 'x-fake-scenario: hang' "$CHAT" -d '{}' >/dev/null
check "hang makes the client time out (curl 28)" test $? -eq 28

# ---- reset: the connection is torn down before any header ----
curl -s --max-time 5 -H 'x-fake-scenario: reset' "$CHAT" -d '{}' >/dev/null
rc=$?
check "reset makes the transfer fail (curl $rc)" test $rc -eq 56 -o $rc -eq 52

# ---- cut_after: stream closes without [DONE] or the final zero chunk ----
curl -s -N --max-time 5 -H 'x-fake-scenario: cut_after=2' "$CHAT" \
    -d '{"model":"m","stream":true}' >"$WORK/cut.txt"
rc=$?
check "cut_after=2 is a transfer error (curl $rc)" test $rc -eq 18 -o $rc -eq 56
check "cut_after=2 delivered two events and no [DONE]" python3 -c '
import sys
raw = open(sys.argv[1]).read()
assert "[DONE]" not in raw and raw.count("data: ") == 2, raw
' "$WORK/cut.txt"

# ---- fail_first=2 via /_control: two failures, then success ----
check "/_control accepts a scenario" \
    test "$(control '{"scenario":"fail_first=2;fail_status=503"}')" = 200
codes=""
for _ in 1 2 3; do
    codes="$codes $("${CURL[@]}" -o /dev/null -w '%{http_code}' "$CHAT" -d '{"model":"m"}')"
done
check "fail_first=2 gives 503 503 200 (got$codes)" test "$codes" = " 503 503 200"
check "/_control rejects a bad scenario" test "$(control '{"scenario":"chunks=lots"}')" = 400
check "/_control resets" test "$(control '{"scenario":"ok","reset":true}')" = 200
check "/_stats counts from the reset" python3 -c '
import json, subprocess, sys
out = subprocess.run(["curl", "-s", "--max-time", "5", sys.argv[1] + "/_stats"],
                     capture_output=True, text=True).stdout
assert json.loads(out)["requests"] == 0, out
' "$BASE"

# ---- the log records the body byte-exactly ----
BODY='{"model": "m-log", "seed": 9007199254740993, "temperature": 0.70,
 "messages": [{"role": "user", "content": "caf\u00e9 \"q\" é"}]}'
"${CURL[@]}" -o /dev/null "$CHAT" -H 'X-Probe: Yes' --data-binary "$BODY"
check "log records the raw body, lowercased headers and the path" python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
rec = [r for r in lines if r["headers"].get("x-probe") == "Yes"]
assert len(rec) == 1, rec
r = rec[0]
assert r["body"] == sys.argv[2], (r["body"], sys.argv[2])
assert r["method"] == "POST" and r["path"] == "/v1/chat/completions"
assert isinstance(r["n"], int) and isinstance(r["t_ms"], int) and r["scenario"] == "ok"
' "$WORK/log.jsonl" "$BODY"

# ---- embeddings, models, health ----
"${CURL[@]}" "$BASE/v1/embeddings" -d '{"model":"e","input":["a","b","a"]}' >"$WORK/emb.json"
check "embeddings are deterministic unit vectors of dimension 8" python3 -c '
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["object"] == "list" and r["model"] == "e" and len(r["data"]) == 3
v = [d["embedding"] for d in r["data"]]
assert [d["index"] for d in r["data"]] == [0, 1, 2]
assert all(len(x) == 8 for x in v) and v[0] == v[2] and v[0] != v[1]
assert abs(math.sqrt(sum(t * t for t in v[0])) - 1) < 1e-4
' "$WORK/emb.json"
check "GET /v1/models lists a model" python3 -c '
import json, subprocess, sys
out = subprocess.run(["curl", "-s", "--max-time", "5", sys.argv[1] + "/v1/models"],
                     capture_output=True, text=True).stdout
assert json.loads(out)["data"][0]["object"] == "model"
' "$BASE"
check "GET /health answers 200" \
    test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health")" = 200

# ---- still alive after all of the above, and stops on SIGTERM ----
check "server is still running" kill -0 "$PID"
kill -TERM "$PID"
for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then
    fail "server exits on SIGTERM"
else
    wait "$PID"
    check "server exits 0 on SIGTERM" test $? -eq 0
fi

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS check(s) failed"; exit 1
fi
echo "all checks passed"
