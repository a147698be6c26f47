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
want=$'gpt-4o\ngpt-4o-mini\nqwen2.5:7b\ngpt-4o\ngpt-4o-mini\nqwen2.5:7b\ngpt-4o'
[ "$out" = "$want" ] && ok || bad "sequential cycle over stdin: got [$out]"

# Blank lines are not queries; CRLF endings are stripped.
out=$(printf 'q1\r\n\nq2\n' | "$BIN" route --config "$CFG" --models gpt-4o,gpt-4o-mini)
[ "$out" = $'gpt-4o\ngpt-4o-mini' ] && ok || bad "blank lines and CRLF: got [$out]"

# Query arguments instead of standard input.
out=$("$BIN" route --config "$CFG" --models=qwen2.5:7b,llama3.1:8b "one" "two" "three")
[ "$out" = $'qwen2.5:7b\nllama3.1:8b\nqwen2.5:7b' ] && ok || bad "query arguments: got [$out]"

# One candidate: always that model.
out=$("$BIN" route --config "$CFG" --models llama3.1:8b a b c)
[ "$out" = $'llama3.1:8b\nllama3.1:8b\nllama3.1:8b' ] && ok || bad "single model: got [$out]"

# --json: one parseable object per query with the model, index and ranking.
"$BIN" route --config "$CFG" --json --models gpt-4o-mini,gpt-4o "hi" "there" >"$TMP/json" 2>"$TMP/err"
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
expect "check-config ok" 0 "ok: 4 models, 2 routes" "" -- "$BIN" check-config "$CFG"
expect "check-config bad" 2 "" "badtype.json: models[0].cost_per_input_token" -- \
    "$BIN" check-config "$TMP/badtype.json"
printf '{"models": [{"name": "a", "shoe_size": 9}]}' >"$TMP/warn.json"
expect "check-config warns" 0 "ok: 1 models" "models[0].shoe_size: unknown key" -- \
    "$BIN" check-config "$TMP/warn.json"
expect "version" 0 "llmroute 0." "" -- "$BIN" version
expect "help" 0 "usage: llmroute <command>" "" -- "$BIN" --help
expect "route --help" 0 "--models a,b,c" "" -- "$BIN" route --help
expect "check-config --help" 0 "usage: llmroute check-config" "" -- "$BIN" check-config --help
expect "no command" 2 "" "usage: llmroute" -- "$BIN"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
