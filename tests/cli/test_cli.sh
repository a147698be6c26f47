#!/usr/bin/env bash
# End-to-end tests of the llmroute command: what a user types, what they see,
# and the exit codes they script against.
#   usage: test_cli.sh /path/to/llmroute /path/to/source
set -u
BIN=$1
SRC=$2
CFG=$SRC/examples/llmroute.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect NAME WANT_RC WANT_STDOUT_SUBSTRING WANT_STDERR_SUBSTRING -- CMD...
expect() {
    local name=$1 want_rc=$2 want_out=$3 want_err=$4
    shift 5
    "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    if [ "$rc" != "$want_rc" ]; then
        bad "$name: exit $rc, wanted $want_rc; stderr: $(cat "$TMP/err")"
    elif [ -n "$want_out" ] && ! grep -qF -- "$want_out" "$TMP/out"; then
        bad "$name: stdout lacks '$want_out': $(cat "$TMP/out")"
    elif [ -n "$want_err" ] && ! grep -qF -- "$want_err" "$TMP/err"; then
        bad "$name: stderr lacks '$want_err': $(cat "$TMP/err")"
    else
        ok
    fi
}

# --- sequential routing over standard input: A B C A B C A ---
out=$(printf 'q1\nq2\nq3\nq4\nq5\nq6\nq7\n' |
      "$BIN" route --config "$CFG" --strategy sequential --models gpt-4o,gpt-4o-mini,qwen2.5:7b)
rc=$?
want=$'gpt-4o\ngpt-4o-mini\nqwen2.5:7b\ngpt-4o\ngpt-4o-mini\nqwen2.5:7b\ngpt-4o'
[ $rc -eq 0 ] && [ "$out" = "$want" ] && ok || bad "sequential cycle over stdin: exit $rc, got [$out]"

# Blank lines are not queries; CRLF endings are stripped.
out=$(printf 'q1\r\n\nq2\n' | "$BIN" route --config "$CFG" --models gpt-4o,gpt-4o-mini)
rc=$?
[ $rc -eq 0 ] && [ "$out" = $'gpt-4o\ngpt-4o-mini' ] && ok ||
    bad "blank lines and CRLF: exit $rc, got [$out]"
# Nor are lines of only spaces and tabs.
out=$(printf 'q1\n  \n\t\n \t \r\nq2\n' | "$BIN" route --config "$CFG" --models gpt-4o,gpt-4o-mini)
rc=$?
[ $rc -eq 0 ] && [ "$out" = $'gpt-4o\ngpt-4o-mini' ] && ok ||
    bad "whitespace-only lines: exit $rc, got [$out]"

# Query arguments instead of standard input.
out=$("$BIN" route --config "$CFG" --models=qwen2.5:7b,llama3.1:8b "one" "two" "three")
rc=$?
[ $rc -eq 0 ] && [ "$out" = $'qwen2.5:7b\nllama3.1:8b\nqwen2.5:7b' ] && ok ||
    bad "query arguments: exit $rc, got [$out]"

# One candidate: always that model.
out=$("$BIN" route --config "$CFG" --models llama3.1:8b a b c)
rc=$?
[ $rc -eq 0 ] && [ "$out" = $'llama3.1:8b\nllama3.1:8b\nllama3.1:8b' ] && ok ||
    bad "single model: exit $rc, got [$out]"

# --json: one parseable object per query with the model, index and ranking.
"$BIN" route --config "$CFG" --json --models gpt-4o-mini,gpt-4o "hi" "there" >"$TMP/json" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "--json: exit $rc: $(cat "$TMP/err")"
if python3 - "$TMP/json" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, lines
a, b = (json.loads(l) for l in lines)
assert (a["model"], a["index"]) == ("gpt-4o-mini", 1), a
assert (b["model"], b["index"]) == ("gpt-4o", 0), b
assert a["strategy"] == "sequential" and a["predicted_quality"] is None
assert [c["model"] for c in a["ranking"]] == ["gpt-4o-mini", "gpt-4o"]
PY
then ok; else bad "--json output"; fi

# --- errors: exit 2 and one line naming the problem ---
expect "unknown model" 2 "" "unknown model 'gpt-5'" -- \
    "$BIN" route --config "$CFG" --models gpt-4o,gpt-5 q
[ "$(wc -l <"$TMP/err")" -eq 1 ] && ok || bad "unknown model: message is not one line"
expect "empty --models" 2 "" "--models: the list is empty" -- "$BIN" route --config "$CFG" --models "" q
expect "empty name in --models" 2 "" "name 2 of the list is empty" -- \
    "$BIN" route --config "$CFG" --models "gpt-4o,,qwen2.5:7b" q
# Spaces and tabs around a list's items are not part of them (no model name
# starts or ends with one); an item of blank space alone is an empty one.
expect "--models with spaces after the commas" 0 "gpt-4o-mini" "" -- \
    "$BIN" route --config "$CFG" --strategy sequential --models " gpt-4o-mini,	qwen2.5:7b " q
[ "$(cat "$TMP/out")" = "gpt-4o-mini" ] && ok || bad "--models ' gpt-4o-mini, ...': $(cat "$TMP/out")"
expect "blank name in --models" 2 "" "name 2 of the list is empty" -- \
    "$BIN" route --config "$CFG" --models "gpt-4o,  ,qwen2.5:7b" q
expect "a name twice, once with a space" 2 "" "--models: 'gpt-4o' is given twice" -- \
    "$BIN" route --config "$CFG" --models "gpt-4o, gpt-4o" q
printf '{"models": [{"name": "a",\n' >"$TMP/trunc.json"
expect "malformed config" 2 "" "trunc.json: line" -- "$BIN" route --config "$TMP/trunc.json" q
[ "$(wc -l <"$TMP/err")" -eq 1 ] && ok || bad "malformed config: message is not one line"
printf '{"models": [{"name": "a", "cost_per_input_token": "cheap"}]}' >"$TMP/badtype.json"
expect "wrong type in config" 2 "" "models[0].cost_per_input_token: expected a non-negative number" -- \
    "$BIN" route --config "$TMP/badtype.json" q
expect "missing config file" 2 "" "/nonexistent.json" -- "$BIN" route --config /nonexistent.json q
expect "no --config" 2 "" "--config FILE is required" -- "$BIN" route q
expect "unknown strategy" 2 "" "unknown strategy 'magic'" -- "$BIN" route --config "$CFG" --strategy magic q
expect "unknown option" 2 "" "unknown option '--frobnicate'" -- "$BIN" route --config "$CFG" --frobnicate q
expect "option without value" 2 "" "'--models' needs a value" -- "$BIN" route --config "$CFG" --models
expect "requirement out of range" 2 "" "--requirement: expected a number from 0 to 1" -- \
    "$BIN" route --config "$CFG" --requirement 1.2 q
expect "requirement NaN" 2 "" "--requirement" -- "$BIN" route --config "$CFG" --requirement nan q
expect "budget without batch" 2 "" "--budget applies to --batch" -- \
    "$BIN" route --config "$CFG" --budget 0.8 q
expect "alpha and requirement together" 2 "" "give --requirement or --alpha, not both" -- \
    "$BIN" route --config "$CFG" --alpha 0.8 --requirement 0.7 q
expect "batch with sequential" 2 "" "cannot solve a batch assignment" -- \
    "$BIN" route --config "$CFG" --batch --alpha 0.8 q1 q2
# Refused before any query is read: with no queries at all too (the
# input is /dev/null), not passed as a batch routed.
expect "batch with sequential, no queries" 2 "" "--batch: the sequential strategy predicts no quality" -- \
    "$BIN" route --config "$CFG" --batch
expect "unknown command" 2 "" "unknown command 'fly'" -- "$BIN" fly
# Standard input that cannot be read is an error, not zero queries; a line
# with a NUL byte is refused, not cut short at it.
"$BIN" route --config "$CFG" <"$TMP" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -qF "cannot read standard input" "$TMP/err" && ok ||
    bad "unreadable standard input: exit $rc: $(cat "$TMP/err")"
printf 'q1\nq\0two\n' | "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 2 ] && grep -qF "standard input, line 2: contains a NUL byte" "$TMP/err" && ok ||
    bad "NUL byte in standard input: exit $rc: $(cat "$TMP/err")"

# --- check-config, version, help ---
# The example's route "auto" is smart: like serve, the check needs a store.
expect "check-config smart route without a store" 2 "" \
    "llmroute.json: routes[1] (auto): smart routing needs a history store (--store FILE, or router.store in the config)" \
    -- "$BIN" check-config "$CFG"
# route, too, says where a store is given.
expect "route smart without a store" 2 "" \
    "llmroute route: smart routing needs a history store (--store FILE, or router.store in the config)" \
    -- "$BIN" route --config "$CFG" --strategy smart q1
# A missing store is checked as the empty one serve would make, and not made.
expect "check-config missing store" 0 "ok: 4 models, 2 routes" \
    "" -- "$BIN" check-config "$CFG" --store "$TMP/absent.db"
[ ! -e "$TMP/absent.db" ] && ok || bad "check-config made the store it was given"
"$BIN" import --store "$TMP/chk.db" "$SRC/examples/history.jsonl" >/dev/null 2>"$TMP/err" ||
    bad "import of the example history: $(cat "$TMP/err")"
sum_before=$(cksum <"$TMP/chk.db")
expect "check-config existing store" 0 \
    "ok: 4 models, 2 routes, strategy sequential; history store $TMP/chk.db: 64 records, embedder tfidf-v1" \
    "" -- "$BIN" check-config "$CFG" --store "$TMP/chk.db"
[ "$(cksum <"$TMP/chk.db")" = "$sum_before" ] && ok || bad "check-config changed the store"
# router.store in the config is the store when --store is not given.
sed 's|"router": {|"router": {"store": "'"$TMP/chk.db"'", |' "$CFG" >"$TMP/withstore.json"
expect "check-config router.store" 0 "history store $TMP/chk.db: 64 records" "" -- \
    "$BIN" check-config "$TMP/withstore.json"
# A store another embedder made, or a file that is not a store: serve stops, so does the check.
sed 's|"router": {|"router": {"embedding": {"base_url": "http://127.0.0.1:9/v1", "model": "emb"}, |' \
    "$CFG" >"$TMP/dense.json"
expect "check-config store of another embedder" 2 "" "chk.db' was built with embedder 'tfidf-v1' but is opened with 'openai:emb'" -- \
    "$BIN" check-config "$TMP/dense.json" --store "$TMP/chk.db"
printf 'not a database, just text that is long enough to be read as a header....................................................................' >"$TMP/junk.db"
expect "check-config store that is not one" 2 "" "junk.db" -- \
    "$BIN" check-config "$CFG" --store "$TMP/junk.db"
expect "check-config bad" 2 "" "badtype.json: models[0].cost_per_input_token" -- \
    "$BIN" check-config "$TMP/badtype.json"
# A configuration saved with a UTF-8 byte order mark loads as the same file
# without one (it was "'[' or '{' expected near" an invisible character).
{ printf '\357\273\277'; cat "$CFG"; } >"$TMP/bom.json"
expect "check-config with a byte order mark" 0 "ok: 4 models, 2 routes" "" -- \
    "$BIN" check-config "$TMP/bom.json" --store "$TMP/chk.db"
expect "route with a byte order mark in the config" 0 "gpt-4o" "" -- \
    "$BIN" route --config "$TMP/bom.json" --models gpt-4o "q1"
printf '{"models": [{"name": "a", "shoe_size": 9}]}' >"$TMP/warn.json"
expect "check-config warns" 0 "ok: 1 models" "models[0].shoe_size: unknown key" -- \
    "$BIN" check-config "$TMP/warn.json"
# check-config runs the gateway's checks too (server, backends, route
# policies), so a file serve would refuse is refused here, naming the key.
chk() { # chk NAME FILE-CONTENT WANT_STDERR [env arguments...]
    local name=$1 body=$2 want=$3
    shift 3
    printf '%s' "$body" >"$TMP/gw.json"
    expect "check-config $name" 2 "" "$want" -- env "$@" "$BIN" check-config "$TMP/gw.json"
}
M='{"name": "m", "backend": "mock"}'
chk "server.max_connections" "{\"models\": [$M], \"server\": {\"max_connections\": -1}}" \
    "gw.json: server.max_connections: expected an integer from 1 to"
chk "server.store_refresh_ms" "{\"models\": [$M], \"server\": {\"store_refresh_ms\": \"x\"}}" \
    "server.store_refresh_ms: expected an integer from 0 to 86400000"
chk "server.listen" "{\"models\": [$M], \"server\": {\"listen\": \"nowhere\"}}" \
    "server.listen: expected HOST:PORT, got 'nowhere'"
chk "server.listen port" "{\"models\": [$M], \"server\": {\"listen\": \"127.0.0.1:99999\"}}" \
    "server.listen: expected a port from 0 to 65535"
# serve checks server.listen even when --listen overrides it: the file a
# serve accepts, check-config and a serve without --listen accept too.
printf '%s' "{\"models\": [$M], \"server\": {\"listen\": \"127.0.0.1:99999\"}}" >"$TMP/gw.json"
expect "serve --listen with a bad server.listen" 2 "" "server.listen: expected a port from 0 to 65535" -- \
    timeout 10 "$BIN" serve --config "$TMP/gw.json" --listen 127.0.0.1:0
# The forms of server.listen the README refuses, each named: an IPv6
# address without its brackets (or a bracket left open), a port with no host.
chk "server.listen open bracket" "{\"models\": [$M], \"server\": {\"listen\": \"[::1:8080\"}}" \
    "server.listen: expected [IPV6]:PORT, got '[::1:8080'"
chk "server.listen IPv6 bare" "{\"models\": [$M], \"server\": {\"listen\": \"::1:80\"}}" \
    "server.listen: an IPv6 address goes in brackets, as [::1]:80, got '::1:80'"
chk "server.listen no host" "{\"models\": [$M], \"server\": {\"listen\": \":8080\"}}" \
    "server.listen: expected a numeric host before ':', got ':8080'"
chk "server not an object" "{\"models\": [$M], \"server\": 5}" "server: expected an object"
chk "server.log_requests" "{\"models\": [$M], \"server\": {\"log_requests\": \"yes\"}}" \
    "server.log_requests: expected true or false"
chk "mock not an object" '{"models": [{"name": "m", "backend": "mock", "mock": 5}]}' \
    "models[0].mock: expected an object"
# The one name server.listen takes, localhost, is IPv4 loopback.
printf '%s' "{\"models\": [$M], \"server\": {\"listen\": \"localhost:0\"}}" >"$TMP/lh.json"
"$BIN" serve --config "$TMP/lh.json" --port-file "$TMP/lh.port" 2>"$TMP/lh.err" &
lh_pid=$!
for _ in $(seq 100); do [ -s "$TMP/lh.port" ] && break; sleep 0.1; done
python3 - "$(cat "$TMP/lh.port" 2>/dev/null)" <<'PY' && ok || bad "serve on localhost:0: no /health on 127.0.0.1: $(cat "$TMP/lh.err")"
import json, sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:%d/health" % int(sys.argv[1]), timeout=10) as r:
    assert r.status == 200 and json.load(r)["status"] == "ok"
PY
kill "$lh_pid" && wait "$lh_pid"
[ $? = 0 ] && ok || bad "serve on localhost:0 did not stop cleanly on SIGTERM"
chk "server.resilience" "{\"models\": [$M], \"server\": {\"resilience\": {\"retry\": 3}}}" \
    "server.resilience.retry: expected an object"
chk "base_url scheme" \
    '{"models": [{"name": "m", "backend": "openai", "base_url": "ftp://example.com/v1"}]}' \
    "models[0] (m): base_url 'ftp://example.com/v1' is not an http:// or https:// URL"
chk "base_url missing" '{"models": [{"name": "m", "backend": "vllm"}]}' \
    "models[0] (m): base_url is required to serve a vllm backend"
chk "model retry" \
    '{"models": [{"name": "m", "backend": "mock", "retry": {"max_attempts": 0}}]}' \
    "models[0].retry.max_attempts"
# A name is sent in x-llmroute-model / x-llmroute-route: a line break in it
# would add a response header of the file's choosing.
chk "control character in a model name" \
    '{"models": [{"name": "m\r\nSet-Cookie: injected=1", "backend": "mock"}]}' \
    "models[0].name: must not contain control characters"
chk "control character in a route name" \
    "{\"models\": [$M], \"routes\": [{\"name\": \"r\\nX: 1\", \"models\": [\"m\"]}]}" \
    "routes[0].name: must not contain control characters"
chk "mock settings" '{"models": [{"name": "m", "backend": "mock", "mock": {"chunks": 0}}]}' \
    "models[0].mock.chunks: expected an integer from 1 to 100000"
R='"routes": [{"name": "r", "models": ["m"]'
chk "route retry" "{\"models\": [$M], $R, \"retry\": {\"max_attempts\": 0}}]}" \
    "routes[0].retry.max_attempts"
chk "route timeouts" "{\"models\": [$M], $R, \"timeouts\": \"soon\"}]}" \
    "routes[0].timeouts"
chk "Authorization header" \
    '{"models": [{"name": "m", "backend": "mock", "headers": {"Authorization": "Bearer x"}}]}' \
    "models[0].headers.Authorization: the gateway sets Authorization from api_key_env"
HDR='{"models": [{"name": "m", "base_url": "http://127.0.0.1:1",
                  "headers": {"x-org": {"env": "LR_TEST_ORG"}}}]}'
chk "header env with a line break" "$HDR" \
    "models[0].headers.x-org: LR_TEST_ORG holds a control character" LR_TEST_ORG=$'a\r\nHost: evil'
grep -qF evil "$TMP/err" && bad "check-config shows a header value: $(cat "$TMP/err")" || ok
# An API key from the environment becomes "Authorization: Bearer KEY" on the
# upstream request (and on router.embedding's): a line break in it would add
# headers too. The message names the variable, never the key.
chk "api_key_env with a line break" \
    '{"models": [{"name": "m", "base_url": "http://127.0.0.1:1", "api_key_env": "LR_TEST_K"}]}' \
    "models[0].api_key_env: LR_TEST_K holds a control character" LR_TEST_K=$'sk-a\r\nX-Evil: 1'
grep -qF Evil "$TMP/err" && bad "check-config shows an API key: $(cat "$TMP/err")" || ok
chk "embedding api_key_env with a line break" \
    "{\"models\": [$M], \"router\": {\"store\": \"$TMP/absent-dense.db\", \"embedding\":
      {\"base_url\": \"http://127.0.0.1:9/v1\", \"model\": \"emb\", \"api_key_env\": \"LR_TEST_EK\"}}}" \
    "router.embedding.api_key_env: LR_TEST_EK holds a control character" \
    LR_TEST_EK=$'sk-e\nX-Evil: 1'
grep -qF Evil "$TMP/err" && bad "check-config shows an API key: $(cat "$TMP/err")" || ok
[ ! -e "$TMP/absent-dense.db" ] && ok || bad "check-config made the store in router.store"
# Unset, it is a warning, as a model's api_key_env is.
expect "check-config embedding api_key_env unset warns" 0 "ok: 1 models" \
    "llmroute check-config: warning: $TMP/gw.json: router.embedding.api_key_env: LR_TEST_EK is not set; embedding requests to http://127.0.0.1:9/v1/embeddings go without a key" -- \
    env -u LR_TEST_EK "$BIN" check-config "$TMP/gw.json"
[ ! -e "$TMP/absent-dense.db" ] && ok || bad "check-config made the store in router.store"
# The command's own embedder client (import, eval, route) refuses the key too.
printf '{"query": "q", "outputs": [{"model_name": "m", "correctness": 1, "output_token_length": 3}]}\n' \
    >"$TMP/one.jsonl"
expect "import: embedding api_key_env with a line break" 2 "" \
    "router.embedding.api_key_env: LR_TEST_EK holds a control character" -- \
    env LR_TEST_EK=$'sk-e\nX-Evil: 1' "$BIN" import --config "$TMP/gw.json" \
    --store "$TMP/dense-key.db" "$TMP/one.jsonl"
grep -qF Evil "$TMP/err" && bad "import shows an API key: $(cat "$TMP/err")" || ok
# The environment as serve reads it: an unset server.api_keys_env stops
# serve, so it fails the check; an unset api_key_env or header variable is a
# warning in both.
KEYS="{\"models\": [$M], \"server\": {\"api_keys_env\": \"LR_TEST_GW_KEYS\"}}"
chk "api_keys_env unset" "$KEYS" \
    "server.api_keys_env: the environment variable LR_TEST_GW_KEYS is not set" -u LR_TEST_GW_KEYS
expect "check-config api_keys_env set" 0 "ok: 1 models" "" -- \
    env LR_TEST_GW_KEYS=k1,k2 "$BIN" check-config "$TMP/gw.json"
printf '%s' "$HDR" >"$TMP/gw.json"
expect "check-config header env unset warns" 0 "ok: 1 models" \
    "llmroute check-config: warning: $TMP/gw.json: models[0].headers.x-org: LR_TEST_ORG is not set; requests to 'm' go" -- \
    env -u LR_TEST_ORG "$BIN" check-config "$TMP/gw.json"
printf '{"models": [{"name": "m", "base_url": "http://127.0.0.1:1", "api_key_env": "LR_TEST_K"}]}' \
    >"$TMP/gw.json"
expect "check-config api_key_env unset warns" 0 "ok: 1 models" \
    "llmroute check-config: warning: $TMP/gw.json: models[0].api_key_env: LR_TEST_K is not set; requests to 'm' go without a key" -- \
    env -u LR_TEST_K "$BIN" check-config "$TMP/gw.json"
# An unknown backend is served as an OpenAI-compatible upstream, and the
# warning says so, listing every known name.
printf '{"models": [{"name": "m", "backend": "vlm", "base_url": "http://127.0.0.1:1"}]}' \
    >"$TMP/gw.json"
expect "check-config unknown backend warns" 0 "ok: 1 models" \
    "models[0].backend: 'vlm' is not a known backend (openai, vllm, sglang, ollama, llamacpp, groq, together, deepseek, mock, openai-compatible); the gateway forwards to it as an OpenAI-compatible upstream at its base_url" -- \
    "$BIN" check-config "$TMP/gw.json"
printf '{"models": [{"name": "m", "backend": "mock", "retry": {"deadline_ms": 5}}]}' \
    >"$TMP/gw.json"
expect "check-config model deadline_ms warns" 0 "ok: 1 models" \
    "models[0].retry.deadline_ms: ignored in a model" -- "$BIN" check-config "$TMP/gw.json"
printf '{"models": [%s], "server": {"listen": "127.0.0.1:0", "shoe_size": 9}}' "$M" >"$TMP/gw.json"
expect "check-config unknown server key warns" 0 "ok: 1 models" \
    "llmroute check-config: warning: $TMP/gw.json: server.shoe_size: unknown key" -- \
    "$BIN" check-config "$TMP/gw.json"
# Every setting the gateway reads, valid: ok, with no store and no server started.
cat >"$TMP/full.json" <<'EOF'
{
  "models": [
    {"name": "a", "backend": "openai", "base_url": "https://api.example.com/v1/",
     "api_key_env": "LR_TEST_A_KEY", "upstream_model": "a-2024",
     "headers": {"x-org": "acme", "x-team": {"env": "LR_TEST_TEAM"}},
     "retry": {"max_attempts": 3}, "timeouts": {"total_ms": 30000},
     "cost_per_input_token": 2.5e-6, "cost_per_output_token": 1e-5},
    {"name": "b", "backend": "vllm", "base_url": "http://127.0.0.1:8000/v1",
     "cost_per_input_token": 0, "cost_per_output_token": 0},
    {"name": "c", "backend": "mock", "mock": {"latency_ms": 5, "chunks": 2, "content": "hi"},
     "cost_per_input_token": 1e-7, "cost_per_output_token": 1e-7}
  ],
  "router": {"strategy": "sequential"},
  "routes": [
    {"name": "auto", "strategy": "smart", "models": ["a", "b", "c"]},
    {"name": "cheap", "models": ["b", "c"], "retry": {"max_retries": 1},
     "timeouts": {"connect_ms": 2000}}
  ],
  "server": {"listen": "[::1]:8080", "max_body_bytes": 1048576, "max_header_bytes": 16384,
             "max_response_bytes": 1048576, "stream_buffer_bytes": 65536,
             "idle_timeout_ms": 30000, "shutdown_timeout_ms": 5000, "max_connections": 100,
             "connect_timeout_ms": 5000, "upstream_timeout_ms": 60000, "log_requests": false,
             "store_refresh_ms": 0, "api_keys_env": "LR_TEST_GW_KEYS",
             "resilience": {"retry": {"max_attempts": 2},
                            "breaker": {"consecutive_failures": 5},
                            "queue": {"max_waiting": 10}}}
}
EOF
expect "check-config full gateway config" 0 "ok: 3 models, 2 routes, strategy sequential" "" -- \
    env LR_TEST_GW_KEYS=k LR_TEST_A_KEY=sk LR_TEST_TEAM=t "$BIN" check-config "$TMP/full.json" \
    --store "$TMP/full.db"
for f in "$SRC"/examples/*.json; do
    expect "check-config $(basename "$f")" 0 ": ok: " "" -- \
        "$BIN" check-config "$f" --store "$TMP/empty-$(basename "$f" .json).db"
done
# An import that made a store and then failed removes it again, but not
# while another handle has it open: here a second import that opened the
# store and waits for its data (a FIFO), as one filling it would.
# Opening a FIFO to write waits for its reader: bounded, so that an import
# that never opens its FIFO (a loaded machine, a failure before it) fails
# the check instead of hanging the suite; the import is then stopped.
fifo_close() { # FIFO PID [TEXT]: write TEXT (or nothing) and close
    timeout 60 bash -c 'printf "%s" "$2" >"$1"' _ "$1" "${3:-}" && return 0
    kill "$2" 2>/dev/null
    bad "an import never opened its FIFO $1"
}
open_by() { # PID NAME: wait (up to 30 s) until process PID has a file NAME open
    for _ in $(seq 600); do
        ls -l "/proc/$1/fd" 2>/dev/null | grep -q "$2\$" && return 0
        sleep 0.05
    done
    return 1
}
mkfifo "$TMP/fifo_a" "$TMP/fifo_b"
"$BIN" import --store "$TMP/shared.db" "$TMP/fifo_a" >"$TMP/a.out" 2>&1 &
pid_a=$!
for _ in $(seq 600); do [ -f "$TMP/shared.db" ] && break; sleep 0.05; done
"$BIN" import --store "$TMP/shared.db" "$TMP/fifo_b" >"$TMP/b.out" 2>&1 &
pid_b=$!
open_by "$pid_b" shared.db
fifo_close "$TMP/fifo_a" "$pid_a" "not json" # A reads no JSON from its FIFO, and fails
wait "$pid_a"
rc_a=$?
if [ "$rc_a" = 1 ] && [ -f "$TMP/shared.db" ] && grep -qF "kept '$TMP/shared.db'" "$TMP/a.out"; then
    ok
else
    bad "failed import removed a store another import has open: exit $rc_a, $(cat "$TMP/a.out")"
fi
fifo_close "$TMP/fifo_b" "$pid_b"
wait "$pid_b"
kept=$("$BIN" import --store "$TMP/shared.db" 2>&1 | tail -1)
if [ "$kept" = "$TMP/shared.db: 0 records" ]; then ok; else
    bad "store kept for the other import is not a store: $kept"; fi
# Alone, the same failure removes the store it made.
expect "failed import removes its new store" 1 "" "removed '$TMP/alone.db'" -- \
    "$BIN" import --store "$TMP/alone.db" "$TMP/missing.jsonl"
if [ ! -e "$TMP/alone.db" ]; then ok; else bad "alone.db left behind"; fi
# A DATA path that is a pipe (a FIFO, or <(zcat d.gz)) is read as standard
# input is: copied, then imported (it was refused, "not a regular file").
printf '%s\n' '{"query": "piped q", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}' \
    >"$TMP/piped.jsonl"
expect "import <(cat FILE)" 0 "imported 1 of 1 records" "" -- \
    bash -c '"$0" import --store "$1" <(cat "$2")' "$BIN" "$TMP/piped.db" "$TMP/piped.jsonl"
mkfifo "$TMP/fifo_c"
(timeout 60 cat "$TMP/piped.jsonl" >"$TMP/fifo_c" &)
expect "import FIFO" 0 "fifo_c: imported 1 of 1 records" "" -- \
    timeout 60 "$BIN" import --store "$TMP/piped.db" "$TMP/fifo_c"
got=$("$BIN" import --store "$TMP/piped.db" 2>/dev/null | tail -1)
[ "$got" = "$TMP/piped.db: 2 records" ] && ok || bad "piped imports: $got"
# '-' on a file the caller has read some of imports what is left, as from
# a pipe (/dev/stdin would open the file again at its first byte).
{
    printf '%s\n' '{"query": "a header line the caller read", "outputs": []}'
    printf '%s\n' '{"query": "rest 1", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}'
    printf '%s\n' '{"query": "rest 2", "outputs": [{"model_name": "gpt-4o", "correctness": 0, "output_token_length": 5}]}'
} >"$TMP/partread.jsonl"
out=$({ IFS= read -r _; "$BIN" import --store "$TMP/partread.db" -; } <"$TMP/partread.jsonl" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ "$(printf '%s' "$out" | head -1)" = "/dev/stdin: imported 2 of 2 records" ] && ok ||
    bad "import - after the caller read a line: exit $rc, got [$out]"
# SIGTERM (or SIGINT, SIGHUP) while an import waits on its data stops it:
# nothing imported, the store it created removed as for a failure, and the
# command dies of the signal (here while a FIFO's writer holds it open;
# lr_import_options.cancel stops the library's import likewise).
mkfifo "$TMP/fifo_stop"
(printf '%s\n' '{"query": "q", "outputs": [{"model_name": "m", "correctness": 1, "output_token_length": 5}]}'
    exec sleep 60) >"$TMP/fifo_stop" &
writer=$!
"$BIN" import --store "$TMP/stopped.db" "$TMP/fifo_stop" >"$TMP/stop.out" 2>&1 &
importer=$!
open_by "$importer" fifo_stop
kill -TERM "$importer"
wait "$importer"
rc=$?
kill "$writer" 2>/dev/null
if [ $rc -eq 143 ] && [ ! -e "$TMP/stopped.db" ] &&
    grep -qF "fifo_stop was stopped by a signal: nothing imported" "$TMP/stop.out" &&
    grep -qF "removed '$TMP/stopped.db', which this command created" "$TMP/stop.out"; then
    ok
else
    bad "import stopped by SIGTERM: exit $rc, $(ls "$TMP"/stopped.db* 2>&1), $(cat "$TMP/stop.out")"
fi
# A store path that is no regular file is refused at once (a FIFO would
# otherwise block the open for good).
expect "store is a FIFO" 1 "" "not a regular file" -- \
    timeout 10 "$BIN" route --config "$CFG" --strategy smart --store "$TMP/fifo_b" \
    --models gpt-4o,gpt-4o-mini q
expect "store is a directory" 1 "" "it is a directory" -- \
    "$BIN" import --store "$TMP" "$TMP/missing.jsonl"

# Another program's SQLite database is refused and left as it was (its
# journal mode too: a store sets WAL only on a file it knows is a store).
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("create table t(x)"); c.commit()' \
    "$TMP/other.sqlite"
expect "import into another program's database" 1 "" "is a SQLite database but not a history store" -- \
    "$BIN" import --store "$TMP/other.sqlite" "$SRC/examples/history.jsonl"
mode=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("pragma journal_mode").fetchone()[0])' \
    "$TMP/other.sqlite")
[ "$mode" = delete ] && ok || bad "a refused database's journal mode became '$mode'"

# A corrupted store's embedder (control characters, invalid UTF-8) is
# shown escaped: it went to the terminal raw, escape sequences and all.
"$BIN" import --store "$TMP/corrupt.db" >/dev/null
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("update meta set value = cast(? as text) where key = ?", (b"evil\x1b]0;owned\x07\xff", "embedder")); c.commit()' \
    "$TMP/corrupt.db"
expect "a corrupted store's embedder is shown escaped" 1 "" \
    "was built with embedder 'evil\\x1b]0;owned\\x07\\xff' but is opened with 'tfidf-v1'" -- \
    "$BIN" import --store "$TMP/corrupt.db" "$SRC/examples/history.jsonl"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f-\xff]' "$TMP/err" && bad "raw bytes in: $(cat -v "$TMP/err")" || ok

# Results that cannot be written (a full disk) fail the command, with a
# message; so does a file over the size limit, which would else be a signal.
"$BIN" route --config "$CFG" --strategy sequential --models gpt-4o,gpt-4o-mini q1 q2 \
    >/dev/full 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && grep -qF "cannot write standard output" "$TMP/err" && ok ||
    bad "route into a full disk: exit $rc, $(cat "$TMP/err")"
"$BIN" version >/dev/full 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && ok || bad "version into a full disk: exit $rc"
(ulimit -f 8; "$BIN" import --store "$TMP/fsize.db" "$SRC/examples/history.jsonl") >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && [ -s "$TMP/err" ] && ok || bad "import over ulimit -f: exit $rc, $(cat "$TMP/err")"
# That import could not make the file a store: the file it made is gone.
[ ! -e "$TMP/fsize.db" ] && ok || bad "a store file that could not be made was left behind"

# serve binds numeric addresses only, so check-config refuses a host name
# there rather than pass a config serve then cannot start; a misspelt mock
# setting is warned about like any other unknown key.
printf '{"models":[{"name":"m","backend":"mock","mock":{"latency":5}}],"server":{"listen":"myhost.invalid:18111"}}' \
    >"$TMP/listen.json"
expect "check-config listen host name" 2 "" "server.listen: expected a numeric host" -- \
    "$BIN" check-config "$TMP/listen.json"
sed -i 's/myhost.invalid/127.0.0.1/' "$TMP/listen.json"
expect "check-config mock unknown key" 0 ": ok: " "models[0].mock.latency: unknown key, ignored" -- \
    "$BIN" check-config "$TMP/listen.json"

# A batch query with one candidate gets it even over an empty store, as a
# single route does; with nothing predicted it is left out of the mean
# quality that alpha bounds, so nothing is unmet and nothing is known.
"$BIN" import --store "$TMP/empty-batch.db" >/dev/null 2>&1
expect "batch, one candidate, empty store" 0 "gpt-4o" "mean predicted quality unknown" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/empty-batch.db" --batch \
    --models gpt-4o q1

# Constraints a batch cannot meet (alpha, budget, capacities): the best
# reachable assignment is printed and the exit code is 3, not a runtime
# error's 1.
expect "batch, alpha cannot be met" 3 "gpt-4o" "alpha 1 cannot be met" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/chk.db" --batch --alpha 1 q1 q2
[ "$(wc -l <"$TMP/out")" -eq 2 ] && ok || bad "batch, alpha cannot be met: $(cat "$TMP/out")"
expect "batch, budget cannot be met" 3 "" "budget 0 cannot be met" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/chk.db" --batch --budget 0 q1 q2
[ "$(wc -l <"$TMP/out")" -eq 2 ] && ok || bad "batch, budget cannot be met: $(cat "$TMP/out")"
python3 - "$CFG" "$TMP/cap.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for m in c["models"]:
    m["capacity"] = 1
json.dump(c, open(sys.argv[2], "w"))
PY
expect "batch, capacities cannot be met" 3 "" "capacities sum to 4, below the 5 queries" -- \
    "$BIN" route --config "$TMP/cap.json" --strategy smart --store "$TMP/chk.db" --batch \
    --alpha 0.5 q1 q2 q3 q4 q5
[ "$(wc -l <"$TMP/out")" -eq 5 ] && ok || bad "batch, capacities cannot be met: $(cat "$TMP/out")"
expect "route --help names exit 3" 0 "3 constraints not met" "" -- "$BIN" route --help
# A missed bound never reads as met: a mean quality of 0.69996 against
# alpha 0.7 was printed "0.7000", a total cost of 1.0000004 against a
# budget of 1.0000001 was printed "1".
cat >"$TMP/near.json" <<'EOF'
{"models": [{"name": "cheap", "cost_per_input_token": 1.0000004e-6, "cost_per_output_token": 0},
            {"name": "dear", "cost_per_input_token": 2e-6, "cost_per_output_token": 0}]}
EOF
for q in "capital of France" "capital of Spain" "capital of Italy"; do
    printf '{"query": "%s", "input_token_length": 5, "outputs": [%s, %s]}\n' "$q" \
        '{"model_name": "cheap", "correctness": 0.69996, "output_token_length": 3}' \
        '{"model_name": "dear", "correctness": 0.69996, "output_token_length": 3}'
done >"$TMP/near.jsonl"
"$BIN" import --store "$TMP/near.db" "$TMP/near.jsonl" >/dev/null 2>&1 || bad "import near.jsonl"
expect "batch, alpha just missed" 3 "cheap" "batch of 1: mean predicted quality 0.69996," -- \
    "$BIN" route --config "$TMP/near.json" --strategy smart --store "$TMP/near.db" --batch \
    --alpha 0.7 --input-tokens 1000000 "capital of Peru"
expect "batch, budget just missed" 3 "cheap" "estimated cost 1.0000004: " -- \
    "$BIN" route --config "$TMP/near.json" --strategy smart --store "$TMP/near.db" --batch \
    --budget 1.0000001 --input-tokens 1000000 "capital of Peru"

# Options only smart routing reads are refused with the sequential strategy,
# whether it is named or the config's default.
for flag in "--requirement 0.5" "--predictor aios" "--n-similar 3" "--alpha 0.5"; do
    set -- $flag
    expect "sequential refuses $1" 2 "" "$1 applies to smart routing" -- \
        "$BIN" route --config "$CFG" "$@" q1
    [ ! -s "$TMP/out" ] && ok || bad "sequential with $1 routed: $(cat "$TMP/out")"
    expect "--strategy sequential refuses $1" 2 "" "$1 applies to smart routing" -- \
        "$BIN" route --config "$CFG" --strategy sequential "$@" q1
done
# --input-tokens takes up to 1e9, the cap of a data record's count and of
# the library's request.
expect "--input-tokens at the cap" 0 "" "" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/chk.db" --json \
    --input-tokens 1000000000 q1
grep -q '"input_tokens":1000000000' "$TMP/out" && ok || bad "--input-tokens 1e9: $(cat "$TMP/out")"
expect "--input-tokens over the cap" 2 "" "--input-tokens" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/chk.db" \
    --input-tokens 1000000001 q1
expect "smart takes --n-similar" 0 "" "" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/chk.db" --n-similar 3 \
    --predictor aios --requirement 0.5 q1

# A smart route over a candidate without prices: check-config refuses it
# (naming the route, the model and the price), serve refuses to start, and
# route --strategy smart names it before routing; one candidate needs none.
python3 - "$CFG" "$TMP/noprice.json" "$TMP/noprice-out.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
del c["models"][0]["cost_per_input_token"]
json.dump(c, open(sys.argv[2], "w"))
c = json.load(open(sys.argv[1]))
del c["models"][3]["cost_per_output_token"]
c["routes"][1]["models"] = ["gpt-4o", "llama3.1:8b"]
json.dump(c, open(sys.argv[3], "w"))
PY
want="noprice.json: routes[1] (auto): model 'gpt-4o' has no cost_per_input_token"
expect "check-config unpriced candidate" 2 "" "$want" -- \
    "$BIN" check-config "$TMP/noprice.json" --store "$TMP/chk.db"
expect "check-config unpriced output" 2 "" \
    "routes[1] (auto): model 'llama3.1:8b' has no cost_per_output_token" -- \
    "$BIN" check-config "$TMP/noprice-out.json" --store "$TMP/chk.db"
expect "serve refuses an unpriced candidate" 2 "" "$want" -- timeout 20 \
    "$BIN" serve --config "$TMP/noprice.json" --store "$TMP/chk.db" --listen 127.0.0.1:0
expect "route smart unpriced candidate" 2 "" "model 'gpt-4o' has no cost_per_input_token" -- \
    "$BIN" route --config "$TMP/noprice.json" --strategy smart --store "$TMP/chk.db" q1
[ ! -s "$TMP/out" ] && ok || bad "route smart unpriced candidate routed: $(cat "$TMP/out")"
expect "route smart unpriced, --models names priced ones" 0 "" "" -- \
    "$BIN" route --config "$TMP/noprice.json" --strategy smart --store "$TMP/chk.db" \
    --models gpt-4o-mini,qwen2.5:7b q1
expect "route smart unpriced, one candidate" 0 "gpt-4o" "" -- \
    "$BIN" route --config "$TMP/noprice.json" --strategy smart --store "$TMP/chk.db" \
    --models gpt-4o q1
expect "route smart batch unpriced, one candidate" 2 "" "model 'gpt-4o' has no cost_per_input_token" -- \
    "$BIN" route --config "$TMP/noprice.json" --strategy smart --store "$TMP/chk.db" \
    --models gpt-4o --batch q1
expect "route sequential unpriced" 0 "gpt-4o" "" -- "$BIN" route --config "$TMP/noprice.json" q1

# A store the command may not read is named with the system's reason, not
# SQLite's bare "unable to open database file". Root reads anything, so as
# root the commands run as nobody (setpriv), which may then enter $TMP.
as_user=()
if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
if [ "$(id -u)" != 0 ] || [ ${#as_user[@]} -gt 0 ]; then
    P=$TMP/perm
    mkdir "$P" "$P/shut" "$P/ro" && chmod 711 "$TMP" && chmod 755 "$P"
    for f in a.db shut/h.db ro/h.db; do
        cp "$TMP/chk.db" "$P/$f" && chmod 644 "$P/$f"
    done
    chmod 000 "$P/a.db" "$P/shut"
    chmod 555 "$P/ro"
    want="cannot open history store '$P/a.db': Permission denied"
    expect "route, unreadable store" 1 "" "$want" -- "${as_user[@]}" \
        "$BIN" route --config "$CFG" --strategy smart --store "$P/a.db" q1
    expect "import, unreadable store" 1 "" "$want" -- "${as_user[@]}" \
        "$BIN" import --store "$P/a.db" "$SRC/examples/history.jsonl"
    expect "check-config, unreadable store" 2 "" "$want" -- "${as_user[@]}" \
        "$BIN" check-config "$CFG" --store "$P/a.db"
    # A store in a folder that may not be entered exists: not "does not exist".
    expect "route, store in a closed folder" 1 "" \
        "cannot open history store '$P/shut/h.db': Permission denied" -- "${as_user[@]}" \
        "$BIN" route --config "$CFG" --strategy smart --store "$P/shut/h.db" q1
    expect "import, new store in a closed folder" 1 "" \
        "cannot open history store '$P/shut/n.db': Permission denied" -- "${as_user[@]}" \
        "$BIN" import --store "$P/shut/n.db" "$SRC/examples/history.jsonl"
    # Readable, in a folder that is not writable: SQLite's words, then why.
    expect "route, store in a read-only folder" 1 "" \
        "attempt to write a readonly database (its folder '$P/ro' is not writable: Permission denied" \
        -- "${as_user[@]}" "$BIN" route --config "$CFG" --strategy smart --store "$P/ro/h.db" q1
    # import and serve, which write it, say the same (they gave SQLite's words
    # alone); the file is the user's, so the folder is the only reason.
    chown 65534 "$P/ro/h.db" 2>/dev/null || true
    want="attempt to write a readonly database (its folder '$P/ro' is not writable: Permission denied"
    expect "import, store in a read-only folder" 1 "" "$want" -- "${as_user[@]}" \
        "$BIN" import --store "$P/ro/h.db" "$SRC/examples/history.jsonl"
    expect "serve, store in a read-only folder" 2 "" "$want" -- "${as_user[@]}" \
        timeout 20 "$BIN" serve --config "$CFG" --store "$P/ro/h.db" --listen 127.0.0.1:0
    # A store file it may not write, in a folder it may: SQLite would open it
    # read-only without a word and fail every write; refused at open, with
    # the reason, and serve does not start on it (it answered each feedback
    # 500). Reading it is still fine.
    mkdir "$P/rw" && chmod 777 "$P/rw"
    cp "$TMP/chk.db" "$P/rw/h.db" && chmod 444 "$P/rw/h.db"
    want="history store '$P/rw/h.db' cannot be written: SQLite could open it only read-only"
    want="$want (access to the file: Permission denied)"
    expect "import, read-only store file" 1 "" "$want" -- "${as_user[@]}" \
        "$BIN" import --store "$P/rw/h.db" "$SRC/examples/history.jsonl"
    expect "serve refuses a read-only store file" 2 "" "$want" -- "${as_user[@]}" \
        timeout 20 "$BIN" serve --config "$CFG" --store "$P/rw/h.db" --listen 127.0.0.1:0
    expect "route, read-only store file" 0 "" "" -- "${as_user[@]}" \
        "$BIN" route --config "$CFG" --strategy smart --store "$P/rw/h.db" q1
    # check-config validates as serve loads it: the same refusal, the same
    # exit code, and the way out named. With --store-read-only both take
    # the file, serve for routing only (feedback answers 501).
    expect "check-config refuses a read-only store file as serve does" 2 "" "$want" -- \
        "${as_user[@]}" "$BIN" check-config "$CFG" --store "$P/rw/h.db"
    expect "serve names --store-read-only for a read-only store file" 2 "" \
        "to route on it without recording feedback, give --store-read-only" -- "${as_user[@]}" \
        timeout 20 "$BIN" serve --config "$CFG" --store "$P/rw/h.db" --listen 127.0.0.1:0
    expect "check-config --store-read-only takes a read-only store file" 0 \
        "history store $P/rw/h.db: 64 records, embedder tfidf-v1, read-only" "" -- \
        "${as_user[@]}" "$BIN" check-config "$CFG" --store "$P/rw/h.db" --store-read-only
    expect "serve --store-read-only starts on a read-only store file" 0 "" \
        '"event":"listening"' -- "${as_user[@]}" timeout --preserve-status -s TERM 2 \
        "$BIN" serve --config "$CFG" --store "$P/rw/h.db" --store-read-only --listen 127.0.0.1:0
    expect "serve --store-read-only needs the store to exist" 2 "" \
        "cannot open history store '$P/rw/none.db': No such file or directory (--store-read-only opens an existing store" -- \
        "${as_user[@]}" timeout 20 "$BIN" serve --config "$CFG" --store "$P/rw/none.db" \
        --store-read-only --listen 127.0.0.1:0
    expect "check-config --store-read-only needs the store to exist" 2 "" \
        "cannot open history store '$P/rw/none.db': No such file or directory (--store-read-only opens an existing store" -- \
        "${as_user[@]}" "$BIN" check-config "$CFG" --store "$P/rw/none.db" --store-read-only
    if [ -e "$P/rw/none.db" ]; then bad "a read-only open made $P/rw/none.db"; else ok; fi
    # Its -shm is not writable either (SQLite made it with the file's mode):
    # SQLite's data version then changes at every read, and a refresh every
    # 100 ms must still not read the whole store again each time.
    python3 - "$CFG" "$P/rw/fast.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.setdefault("server", {})["store_refresh_ms"] = 100
json.dump(c, open(sys.argv[2], "w"))
PY
    "${as_user[@]}" timeout --preserve-status -s TERM 2 "$BIN" serve --config "$P/rw/fast.json" \
        --store "$P/rw/h.db" --store-read-only --listen 127.0.0.1:0 2>"$TMP/ro_serve.err"
    rc=$?
    n=$(grep -c '"event":"store_refreshed"' "$TMP/ro_serve.err")
    if [ "$rc" = 0 ] && [ "$n" = 0 ]; then
        ok
    else
        bad "serve --store-read-only: exit $rc, $n store_refreshed lines: $(cat "$TMP/ro_serve.err")"
    fi
    chmod 755 "$P/shut" "$P/ro"
    chmod 700 "$TMP"
else
    echo "skipped the unreadable-store checks: running as root without setpriv"
fi

# A file-system failure is named with the system's reason, not only SQLite's
# "disk I/O error": a file size limit (ulimit -f, EFBIG; root is bound by it
# too) that an import's -wal outgrows, and one a store's -shm outgrows at
# open. serve exits 1 for it, a fault at run time, not 2 as for a config.
python3 - "$TMP/big.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write(json.dumps({"query": "question %d, long enough to take some room " % i * 4,
                            "input_token_length": 30,
                            "outputs": [{"model_name": "gpt-4o", "correctness": 1,
                                         "output_token_length": 2}]}) + "\n")
PY
limited() { # limited BLOCKS command...: the command under ulimit -f, SIGXFSZ ignored
    bash -c 'trap "" XFSZ; ulimit -f "$0"; exec "$@"' "$@"
}
expect "import over a file size limit names it" 1 "" "disk I/O error (File too large)" -- \
    limited 600 "$BIN" import --store "$TMP/fsz.db" "$TMP/big.jsonl"
"$BIN" import --store "$TMP/fsz2.db" "$SRC/examples/history.jsonl" >/dev/null
rm -f "$TMP/fsz2.db-shm" "$TMP/fsz2.db-wal"
expect "route, -shm over a file size limit" 1 "" "opening: disk I/O error (File too large)" -- \
    limited 16 "$BIN" route --config "$CFG" --strategy smart --store "$TMP/fsz2.db" q1
expect "serve exits 1 on a store fault at start" 1 "" "disk I/O error (File too large)" -- \
    limited 16 timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/fsz2.db" \
    --listen 127.0.0.1:0
expect "serve --help: a store fault is exit 1" 0 "the store failing to be read or" "" -- \
    "$BIN" serve --help

# Each command's --help lists the exit codes it gives; these are the ones
# beyond 0 and a plain usage error.
expect "import --help exit codes" 0 "2 usage or configuration error" "" -- "$BIN" import --help
printf '{"models": []}' >"$TMP/nomodels.json"
expect "import with a bad --config exits 2" 2 "" "nomodels.json" -- \
    "$BIN" import --config "$TMP/nomodels.json" --store "$TMP/imp.db"
[ ! -e "$TMP/imp.db" ] && ok || bad "import with a bad --config made the store"
expect "import of another embedder's store exits 1" 1 "" "was built with embedder 'tfidf-v1'" -- \
    "$BIN" import --config "$TMP/dense.json" --store "$TMP/chk.db"
expect "serve --help exit codes" 0 "Exit codes: 0 stopped by SIGTERM" "" -- "$BIN" serve --help
expect "serve with a bad config exits 2" 2 "" "nomodels.json" -- \
    timeout 20 "$BIN" serve --config "$TMP/nomodels.json" --listen 127.0.0.1:0
expect "check-config --help exit codes" 0 "Exit codes: 0 valid; 1 out of memory; 2 usage" "" -- \
    "$BIN" check-config --help
expect "check-config --help on side files" 0 "the store's contents are not" "" -- \
    "$BIN" check-config --help
expect "llmroute --help exit codes" 0 "3 route --batch: constraints not met" "" -- "$BIN" --help

# docs/ARCHITECTURE.md's tour names every header of the code it tours.
for h in "$SRC"/src/lib/*.h "$SRC"/src/cli/*.h "$SRC"/src/gateway/*.h; do
    grep -qF "$(basename "$h")" "$SRC/docs/ARCHITECTURE.md" && ok ||
        bad "docs/ARCHITECTURE.md does not mention $(basename "$h")"
done

expect "version" 0 "llmroute 0." "" -- "$BIN" version
expect "help" 0 "usage: llmroute <command>" "" -- "$BIN" --help
expect "route --help" 0 "--models a,b,c" "" -- "$BIN" route --help
expect "check-config --help" 0 "usage: llmroute check-config" "" -- "$BIN" check-config --help
# -h is --help in every command, as it is for llmroute itself.
expect "-h" 0 "usage: llmroute <command>" "" -- "$BIN" -h
expect "route -h" 0 "usage: llmroute route" "" -- "$BIN" route -h
expect "import -h" 0 "usage: llmroute import" "" -- "$BIN" import -h
expect "eval -h" 0 "usage: llmroute eval" "" -- "$BIN" eval -h
expect "check-config -h" 0 "usage: llmroute check-config" "" -- "$BIN" check-config -h
expect "serve -h" 0 "usage: llmroute serve" "" -- "$BIN" serve -h
expect "version -h" 0 "usage: llmroute version" "" -- "$BIN" version -h
expect "--version" 0 "llmroute 0." "" -- "$BIN" --version
expect "help" 0 "usage: llmroute <command>" "" -- "$BIN" help
expect "version --help" 0 "usage: llmroute version" "" -- "$BIN" version --help
expect "version with an argument" 2 "" "takes no arguments" -- "$BIN" version x
expect "--version with an argument" 2 "" "takes no arguments" -- "$BIN" --version x
expect "other short options stay unknown" 2 "" "unknown option '-x'" -- "$BIN" route -x
expect "no command" 2 "" "usage: llmroute" -- "$BIN"

# --- check-config: a new store's folder is checked as serve's create needs it ---
expect "check-config: a store in a missing folder" 2 "" \
    "cannot open history store '$TMP/nodir/x.db': No such file or directory" -- \
    "$BIN" check-config "$CFG" --store "$TMP/nodir/x.db"
expect "serve: a store in a missing folder" 2 "" \
    "cannot open history store '$TMP/nodir/x.db': No such file or directory" -- \
    timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/nodir/x.db" --listen 127.0.0.1:0
: >"$TMP/afile"
expect "check-config: a store under a file" 2 "" \
    "cannot open history store '$TMP/afile/x.db': Not a directory" -- \
    "$BIN" check-config "$CFG" --store "$TMP/afile/x.db"
# Permission bits do not bind root: this part runs as another user only.
if [ "$(id -u)" != 0 ]; then
    mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
    expect "check-config: a store in a folder not writable" 2 "" \
        "cannot open history store '$TMP/ro/x.db': Permission denied" -- \
        "$BIN" check-config "$CFG" --store "$TMP/ro/x.db"
    expect "serve: a store in a folder not writable" 2 "" \
        "cannot open history store '$TMP/ro/x.db': Permission denied" -- \
        timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/ro/x.db" --listen 127.0.0.1:0
    chmod 755 "$TMP/ro"
fi

# --- an empty file is no store, whichever way it is opened: the same words ---
: >"$TMP/e.db"
msg="history store '$TMP/e.db': file is not a database (it is empty)"
expect "route --store on an empty file" 1 "" "$msg" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/e.db" q
expect "eval --store on an empty file" 1 "" "$msg" -- \
    "$BIN" eval --config "$CFG" --store "$TMP/e.db" --data "$SRC/examples/history.jsonl"
expect "check-config --store on an empty file" 2 "" "$msg" -- \
    "$BIN" check-config "$CFG" --store "$TMP/e.db"
expect "check-config --store-read-only on an empty file" 2 "" "$msg" -- \
    "$BIN" check-config "$CFG" --store "$TMP/e.db" --store-read-only
expect "serve --store-read-only on an empty file" 2 "" "$msg" -- \
    timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/e.db" --store-read-only \
    --listen 127.0.0.1:0
! [ -s "$TMP/e.db" ] && ok || bad "a read-only open changed an empty file"

# --- import: a store made and filled from one file is kept when another fails ---
expect "import: a missing second file" 1 "history.jsonl: imported 64 of 64 records" \
    "kept '$TMP/two.db', which this command created: it holds the 64 records imported from the other files" -- \
    "$BIN" import --store "$TMP/two.db" "$SRC/examples/history.jsonl" "$TMP/nosuch.jsonl"
! grep -qF "another process" "$TMP/err" && ok || bad "import blamed another process: $(cat "$TMP/err")"
n=$("$BIN" import --store "$TMP/two.db" 2>&1 | tail -1)
[ "$n" = "$TMP/two.db: 64 records" ] && ok || bad "the store kept by import: $n"

# --- the config's store is smart routing's: sequential routing opens none ---
printf '{"models": [{"name": "a"}, {"name": "b"}], "router": {"store": "not-made-yet.db"}}' \
    >"$TMP/later.json"
expect "route sequential with router.store not made yet" 0 "b" "" -- \
    "$BIN" route --config "$TMP/later.json" q1 q2
! [ -e "$TMP/not-made-yet.db" ] && ok || bad "sequential route made the config's store"
expect "route smart with router.store not made yet" 2 "" "not-made-yet.db' does not exist" -- \
    "$BIN" route --config "$TMP/later.json" --strategy smart --models a q1
expect "route sequential with a --store not made" 2 "" "nosuch.db' does not exist" -- \
    "$BIN" route --config "$TMP/later.json" --store "$TMP/nosuch.db" q1
# A misspelt strategy is named as such: with the config's store not made
# yet, the error was that store's absence, as if the strategy were smart.
expect "route, unknown strategy, router.store not made yet" 2 "" "unknown strategy 'smrat'" -- \
    "$BIN" route --config "$TMP/later.json" --strategy smrat q1
! grep -qF "does not exist" "$TMP/err" && ok || bad "unknown strategy blamed the store: $(cat "$TMP/err")"

# --- an empty store: exit 2 from route and eval alike; route counts from 1 ---
"$BIN" import --store "$TMP/none.db" >/dev/null 2>&1
expect "route over an empty store" 2 "" "query 1: the history store is empty: import data first" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/none.db" q
expect "eval over an empty store" 2 "" "smart: record 0: the history store is empty: import data first" -- \
    "$BIN" eval --config "$CFG" --store "$TMP/none.db" --data "$SRC/examples/history.jsonl"

# --- eval --sweep names a row's bound as the library's message does ---
# (a budget swept at a model's real cost, 0.0016065390000000004, was named
# 0.00160654 in front of the message; an alpha step 0.92 was 0.92 there and
# 0.9199999999999999 in it)
"$BIN" import --store "$TMP/sweep.db" "$SRC/examples/history.jsonl" >/dev/null 2>&1
"$BIN" eval --config "$CFG" --store "$TMP/sweep.db" --data "$SRC/examples/history.jsonl" \
    --sweep >/dev/null 2>"$TMP/err"
grep -qF "cannot be met" "$TMP/err" && ok || bad "eval --sweep: no bound unmet: $(cat "$TMP/err")"
awk '/(alpha|budget) [^ ]+:.* cannot be met/ {
        for (i = 1; i <= NF; i++)
            if ($i == "alpha" || $i == "budget") {
                v = $(i + 1); sub(/:$/, "", v)
                if (!(($i) in first)) first[$i] = v
                else if (first[$i] != v) { print; bad = 1 }
            }
        delete first }
     END { exit bad }' "$TMP/err" && ok || bad "eval --sweep: a bound named two ways"
! grep -qF "0.9199999999999999" "$TMP/err" && ok || bad "eval --sweep: alpha 0.9199999999999999"


# An outcome of 0.7 meets a requirement of 0.7 (aios: the plain mean of one
# neighbour): the store's floats read it back as 0.69999999, and the
# router chose a model 60 times dearer.
printf '%s\n' '{"models": [
 {"name": "cheap", "backend": "mock", "cost_per_input_token": 3e-7, "cost_per_output_token": 5e-7},
 {"name": "dear", "backend": "mock", "cost_per_input_token": 1e-5, "cost_per_output_token": 3e-5}]}' \
    >"$TMP/f32.json"
printf '%s\n' '{"query": "alpha beta gamma", "input_token_length": 5, "outputs": [{"model_name": "cheap", "correctness": 0.7, "output_token_length": 10}, {"model_name": "dear", "correctness": 1, "output_token_length": 10}]}' \
    >"$TMP/f32.jsonl"
"$BIN" import --store "$TMP/f32.db" "$TMP/f32.jsonl" >/dev/null 2>&1
got=$("$BIN" route --config "$TMP/f32.json" --store "$TMP/f32.db" --strategy smart \
    --predictor aios --requirement 0.7 "alpha beta gamma" 2>"$TMP/err")
[ "$got" = cheap ] && ok || bad "route --predictor aios, an outcome of 0.7 at requirement 0.7: '$got'; $(cat "$TMP/err")"
# The same in a batch: a mean of 0.69999999 meets alpha 0.7. It sent a
# query to the dear model, and with cheap alone the batch failed (exit 3,
# "mean quality 0.69999999 is the most reachable; alpha 0.7 cannot be met").
got=$("$BIN" route --config "$TMP/f32.json" --store "$TMP/f32.db" --strategy smart \
    --predictor aios --batch --alpha 0.7 "alpha beta gamma" "alpha beta" "beta gamma" 2>"$TMP/err")
rc=$?
[ $rc -eq 0 ] && [ "$(echo $got)" = "cheap cheap cheap" ] &&
    grep -qF "batch of 3: mean predicted quality 0.7000, " "$TMP/err" && ok ||
    bad "route --batch --alpha 0.7 over outcomes of 0.7: exit $rc, '$got'; $(cat "$TMP/err")"
expect "batch of the cheap model alone, outcomes of 0.7 at alpha 0.7" 0 "cheap" \
    "batch of 1: mean predicted quality 0.7000, " -- \
    "$BIN" route --config "$TMP/f32.json" --store "$TMP/f32.db" --strategy smart \
    --predictor aios --models cheap --batch --alpha 0.7 "alpha beta gamma"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
