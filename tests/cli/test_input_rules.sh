#!/usr/bin/env bash
# End-to-end tests of the rule that bad input of every kind gets a clear
# error naming the problem, a documented exit code, and changes nothing
# stored: raw NUL bytes in files, repeated and empty option values, empty
# and blank file arguments, '-',
# empty queries, a bad query after good ones, names the command line cannot
# select, the store's model cap, lost output, a smart choice with no
# history behind it, and /v1/route's code for an empty list of queries.
#   usage: test_input_rules.sh /path/to/llmroute /path/to/source
set -u
BIN=$1
SRC=$2
CFG=$SRC/examples/llmroute.json
HIST=$SRC/examples/history.jsonl
TMP=$(mktemp -d)
serve_pid=
hold_pid=
trap '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; [ -n "$hold_pid" ] && kill "$hold_pid" 2>/dev/null; rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

"$BIN" import --store "$TMP/h.db" "$HIST" >/dev/null 2>&1 || bad "importing the example history"
REC='{"query": "q", "input_token_length": 1, "outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 1}]}'

# --- a raw NUL byte in a file is named as one, with its place ---
printf '{"models": [{"name": "a"\0, "backend": "mock"}]}' >"$TMP/nul.json"
expect "check-config: a raw NUL byte" 2 "nul.json: line 1, column 25: a NUL byte (JSON text holds none)" -- \
    "$BIN" check-config "$TMP/nul.json"
expect "route: a config with a raw NUL byte" 2 "line 1, column 25: a NUL byte" -- \
    "$BIN" route --config "$TMP/nul.json" q
printf '%s\n{"query": "r"\0}\n' "$REC" >"$TMP/nul.jsonl"
printf '[%s,\n  {"query": "r"\0}]\n' "$REC" >"$TMP/nularr.json"
expect "import: a raw NUL byte in JSON lines" 1 "nul.jsonl:2:14: a NUL byte (JSON text holds none)" -- \
    "$BIN" import --store "$TMP/h.db" "$TMP/nul.jsonl"
expect "import: a raw NUL byte in an array" 1 "nularr.json:2:16: a NUL byte (JSON text holds none)" -- \
    "$BIN" import --store "$TMP/h.db" "$TMP/nularr.json"
[ "$(count "$TMP/h.db")" = "$TMP/h.db: 64 records" ] && ok || bad "NUL import changed the store: $(count "$TMP/h.db")"
expect "eval: a raw NUL byte in JSON lines" 2 "nul.jsonl:2:14: a NUL byte (JSON text holds none)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/nul.jsonl"
expect "eval: a raw NUL byte in an array" 2 "nularr.json:2:16: a NUL byte (JSON text holds none)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/nularr.json"

# --- eval --predictors is checked before any work, with a store or not ---
expect "eval --predictors bogus without a store" 2 \
    "--predictors: unknown predictor 'bogus' (expected \"default\" or \"aios\")" -- \
    "$BIN" eval --config "$CFG" --data "$HIST" --predictors bogus
expect "eval --predictors default,bogus with a store" 2 \
    "--predictors: unknown predictor 'bogus' (expected \"default\" or \"aios\")" -- \
    "$BIN" eval --config "$CFG" --store "$TMP/h.db" --data "$HIST" --predictors default,bogus
! [ -s "$TMP/out" ] && ok || bad "eval --predictors bogus printed rows: $(head -3 "$TMP/out")"

# --- the store's model cap is the store's, not the file's ---
python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
def rec(q, names):
    return json.dumps({"query": q, "input_token_length": 1, "outputs": [
        {"model_name": n, "correctness": 1, "output_token_length": 1} for n in names]})
with open(d + "/m4090.jsonl", "w") as f:
    for r in range(0, 4090, 409):
        f.write(rec("q%d" % r, ["m%d" % i for i in range(r, r + 409)]) + "\n")
with open(d + "/m10.jsonl", "w") as f:
    for r in range(10):
        f.write(rec("n%d" % r, ["n%d" % r]) + "\n")
PY
"$BIN" import --store "$TMP/cap.db" "$TMP/m4090.jsonl" >/dev/null 2>&1 || bad "importing 4090 models"
expect "import: a file that takes the store past its model cap" 1 \
    "m10.jsonl: record 6 (line 7) adds model 'n6': history store '$TMP/cap.db' would hold more than 4096 distinct models (it holds 4090, and this file adds 6 before this record)" -- \
    "$BIN" import --store "$TMP/cap.db" "$TMP/m10.jsonl"
[ "$(count "$TMP/cap.db")" = "$TMP/cap.db: 10 records" ] && ok || bad "cap import: $(count "$TMP/cap.db")"

# --- a smart choice with no history behind it is said on stderr ---
printf '%s\n' "$REC" >"$TMP/one.jsonl"
"$BIN" import --store "$TMP/one.db" "$TMP/one.jsonl" >/dev/null 2>&1
expect "route smart: no candidate has outcomes" 0 \
    "warning: no candidate model ('gpt-4o-mini', 'qwen2.5:7b') has outcomes in the history store for this query" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/one.db" --models qwen2.5:7b,gpt-4o-mini hello
expect "route smart --batch: no candidate has outcomes" 0 "warning: no candidate model" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/one.db" --models qwen2.5:7b,gpt-4o-mini \
    --batch --budget 1 hello there
# One candidate: nothing was chosen, so the warning says no "cheapest".
expect "route smart: the only candidate has no outcomes" 0 \
    "warning: the only candidate model ('qwen2.5:7b') has no outcomes in the history store for this query: nothing predicts its quality" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/one.db" --models qwen2.5:7b hello
! grep -q cheapest "$TMP/err" && ok || bad "route smart, one candidate: $(cat "$TMP/err")"
expect "route smart: some candidates have no outcomes" 0 \
    "warning: 1 of 2 candidate models have no outcomes in the history store for this query ('qwen2.5:7b')" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/one.db" --models qwen2.5:7b,gpt-4o hello
"$BIN" route --config "$CFG" --strategy smart --store "$TMP/h.db" "hello there" >/dev/null 2>"$TMP/err"
! grep -q warning "$TMP/err" && ok || bad "route smart over a full history warned: $(cat "$TMP/err")"
# Too many to name: the list holds whole names and counts the rest, so
# the names and the count add up to the models said to have no outcomes.
python3 - "$TMP/m200.json" "$TMP/m200.jsonl" <<'PY'
import json, sys
names = ["model-%03d" % i for i in range(200)]
json.dump({"models": [{"name": n, "cost_per_input_token": 1e-6, "cost_per_output_token": 1e-6}
                      for n in names]}, open(sys.argv[1], "w"))
open(sys.argv[2], "w").write(json.dumps({"query": "hello", "outputs": [
    {"model_name": "model-000", "correctness": 1, "output_token_length": 5}]}) + "\n")
PY
"$BIN" import --store "$TMP/m200.db" "$TMP/m200.jsonl" >/dev/null 2>&1
"$BIN" route --config "$TMP/m200.json" --strategy smart --store "$TMP/m200.db" hello >/dev/null 2>"$TMP/err"
python3 - "$TMP/err" <<'PY' && ok || bad "route smart, 199 models without outcomes: $(cat "$TMP/err")"
import re, sys
err = open(sys.argv[1]).read()
m = re.search(r"warning: 199 of 200 candidate models .*? \((.*), and (\d+) more\): their", err)
assert m, err
listed = m.group(1).split(", ")
assert all(re.fullmatch(r"'model-\d{3}'", n) for n in listed), listed
assert len(listed) + int(m.group(2)) == 199, (len(listed), m.group(2))
PY

# --- model names that differ only in case are two models, with a warning ---
printf '{"models": [{"name": "GPT-4", "backend": "mock"}, {"name": "gpt-4", "backend": "mock"}]}' >"$TMP/case.json"
expect "check-config: 'GPT-4' and 'gpt-4'" 0 \
    "warning: $TMP/case.json: models[1].name: 'gpt-4' differs from models[0].name 'GPT-4' only in case" -- \
    "$BIN" check-config "$TMP/case.json"
grep -qF "ok: 2 models" "$TMP/out" && ok || bad "check-config of case.json: $(cat "$TMP/out")"

# --- a store another process holds in rollback-journal mode: 5 s in all ---
# Another program switches the store out of WAL (journal_mode=DELETE) and
# holds it for 9 s: with BEGIN EXCLUSIVE, a lock that keeps readers out
# too, import waited 5 s to read the store at open, took that for a new
# store, and waited 5 s more to make it one; with a read, it waited for
# as long as the reader read, 5 s at each try to switch back to WAL. So
# either import got in when the lock was gone and wrote. It gives up
# with the documented message and writes nothing; no time is measured.
hold_store() { # MODE: EXCLUSIVE or read; returns once the lock is held
    rm -f "$TMP/held" "$TMP"/held.db*
    "$BIN" import --store "$TMP/held.db" "$HIST" >/dev/null 2>&1 || bad "importing into held.db"
    python3 - "$TMP/held.db" "$1" "$TMP/held" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE")
if sys.argv[2] == "read":
    c.execute("BEGIN")
    c.execute("SELECT COUNT(*) FROM records").fetchone()
else:
    c.execute("BEGIN EXCLUSIVE")
open(sys.argv[3], "w").close()
time.sleep(9)
c.execute("ROLLBACK")
PY
    hold_pid=$!
    for _ in $(seq 100); do [ -e "$TMP/held" ] && break; sleep 0.1; done
    [ -e "$TMP/held" ] || bad "the store was not held"
}
for mode in EXCLUSIVE read; do
    hold_store $mode
    expect "import into a store held by another process ($mode, rollback journal)" 1 \
        "history store '$TMP/held.db' is busy: another process has held it for over 5 s" -- \
        "$BIN" import --store "$TMP/held.db" "$HIST"
    grep -qF "nothing was written, try again" "$TMP/err" && ok ||
        bad "import into a held store ($mode): $(cat "$TMP/err")"
    wait "$hold_pid"
    hold_pid=
    [ "$(count "$TMP/held.db")" = "$TMP/held.db: 64 records" ] && ok ||
        bad "import into a held store ($mode) changed it: $(count "$TMP/held.db")"
done

# --- output lost to a full disk names the reason ---
if [ -w /dev/full ]; then
    "$BIN" route --config "$CFG" q >/dev/full 2>"$TMP/err"
    rc=$?
    [ "$rc" = 1 ] && grep -qF "cannot write standard output: No space left on device" "$TMP/err" && ok ||
        bad "route >/dev/full: exit $rc, $(cat "$TMP/err")"
    "$BIN" eval --config "$CFG" --data "$HIST" >/dev/full 2>"$TMP/err"
    rc=$?
    [ "$rc" = 1 ] && grep -qF "cannot write standard output: No space left on device" "$TMP/err" && ok ||
        bad "eval >/dev/full: exit $rc, $(cat "$TMP/err")"
fi

# --- a value option given twice is refused; a flag twice means it once ---
expect "import --store twice" 2 "llmroute import: --store is given twice" -- \
    "$BIN" import --store "$TMP/a.db" --store "$TMP/b.db" "$HIST"
! ls "$TMP"/a.db* "$TMP"/b.db* >/dev/null 2>&1 && ok || bad "import --store twice made a store"
expect "route --config twice" 2 "llmroute route: --config is given twice" -- \
    "$BIN" route --config "$CFG" --config="$CFG" q
expect "eval --format twice" 2 "llmroute eval: --format is given twice" -- \
    "$BIN" eval --config "$CFG" --data "$HIST" --format csv --format json
expect "serve --listen twice" 2 "llmroute serve: --listen is given twice" -- \
    timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/h.db" --listen 127.0.0.1:0 --listen 127.0.0.1:0
expect "check-config --store twice" 2 "llmroute check-config: --store is given twice" -- \
    "$BIN" check-config "$CFG" --store "$TMP/h.db" --store "$TMP/h.db"
expect "route --json twice" 0 '"model":"gpt-4o"' -- "$BIN" route --config "$CFG" --json --json q

# --- an empty option value is refused while parsing, naming the option ---
expect "route --config ''" 2 "llmroute route: --config: the value is empty" -- \
    "$BIN" route --config "" q
expect "import --store ''" 2 "llmroute import: --store: the value is empty" -- \
    "$BIN" import --store "" "$HIST"
expect "eval --data ''" 2 "llmroute eval: --data: the value is empty" -- \
    "$BIN" eval --config "$CFG" --data ""
expect "eval --plot=''" 2 "llmroute eval: --plot: the value is empty" -- \
    "$BIN" eval --config "$CFG" --data "$HIST" --plot=
expect "route --store ''" 2 "llmroute route: --store: the value is empty" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "" q
# An empty file argument too, by its place, before any store is made or
# any file read: a store named after it is not created, one that exists keeps its records.
expect "import ''" 2 "llmroute import: the file name is empty" -- \
    "$BIN" import --store "$TMP/new.db" ""
[ ! -e "$TMP/new.db" ] && ok || bad "import '' made a store"
expect "import FILE ''" 2 "llmroute import: file 2 of 2: the name is empty" -- \
    "$BIN" import --store "$TMP/h.db" "$HIST" ""
[ "$(count "$TMP/h.db")" = "$TMP/h.db: 64 records" ] && ok || bad "import FILE '' changed the store"
expect "check-config ''" 2 "llmroute check-config: the file name is empty" -- \
    "$BIN" check-config ""
expect "import '  '" 2 "llmroute import: the file name is blank (only spaces, tabs or line breaks)" \
    -- "$BIN" import --store "$TMP/new.db" "  "
[ ! -e "$TMP/new.db" ] && ok || bad "import '  ' made a store"
expect "check-config TAB" 2 "llmroute check-config: the file name is blank" -- \
    "$BIN" check-config "$(printf '\t')"

# --- '-' is standard input for import and eval --data; no query for route ---
"$BIN" import --store "$TMP/stdin.db" - <"$HIST" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 0 ] && grep -qF "/dev/stdin: imported 64 of 64 records" "$TMP/out" && ok ||
    bad "import -: exit $rc, $(cat "$TMP/err" "$TMP/out")"
# From a pipe (copied to an unlinked temporary file first: the store reads
# regular files only), with messages naming /dev/stdin.
cat "$HIST" | "$BIN" import --store "$TMP/pipe.db" - >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 0 ] && grep -qF "/dev/stdin: imported 64 of 64 records" "$TMP/out" && ok ||
    bad "cat | import -: exit $rc, $(cat "$TMP/err" "$TMP/out")"
{ head -n 1 "$HIST"; printf '{bad\n'; } |
    "$BIN" import --store "$TMP/pipe.db" --strict - >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && grep -qF "llmroute import: /dev/stdin:2:" "$TMP/err" &&
    grep -qF "$TMP/pipe.db: 64 records" "$TMP/out" && ok ||
    bad "cat bad | import -: exit $rc, $(cat "$TMP/err" "$TMP/out")"
expect "import - twice" 2 "'-' (standard input) is given twice" -- \
    "$BIN" import --store "$TMP/stdin2.db" - -
# One data file named twice (as it is, spelt another way, by a link, or as
# '-' redirected from it) was imported twice, every record stored twice.
"$BIN" import --store "$TMP/twice.db" "$HIST" >/dev/null 2>&1
ln -s "$HIST" "$TMP/hist-link.jsonl"
expect "import: a data file given twice" 2 "'$HIST' is given twice: its records would be stored twice" -- \
    "$BIN" import --store "$TMP/twice.db" "$HIST" "$TMP/one.jsonl" "$HIST"
expect "import: a data file and a link to it" 2 \
    "'$HIST' and '$TMP/hist-link.jsonl' are one file: its records would be stored twice" -- \
    "$BIN" import --store "$TMP/twice.db" "$HIST" "$TMP/hist-link.jsonl"
"$BIN" import --store "$TMP/twice.db" - "$SRC/examples/../examples/history.jsonl" <"$HIST" \
    >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -qF "'-' and '$SRC/examples/../examples/history.jsonl' are one file" "$TMP/err" &&
    ok || bad "import - <FILE FILE: exit $rc, $(cat "$TMP/err" "$TMP/out")"
[ "$(count "$TMP/twice.db")" = "$TMP/twice.db: 64 records" ] && ok ||
    bad "import of a file given twice changed the store: $(count "$TMP/twice.db")"
# A copy is another file: both are imported.
cp "$TMP/one.jsonl" "$TMP/one-copy.jsonl"
expect "import: a file and its copy" 0 "$TMP/twice.db: 66 records" -- \
    "$BIN" import --store "$TMP/twice.db" "$TMP/one.jsonl" "$TMP/one-copy.jsonl"
"$BIN" eval --config "$CFG" --store "$TMP/h.db" --data - --format csv <"$HIST" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 0 ] && grep -q "^smart," "$TMP/out" && ok || bad "eval --data -: exit $rc, $(cat "$TMP/err")"
expect "route -" 2 "query 1: '-' is not read as standard input" -- "$BIN" route --config "$CFG" -
# No file option reads or writes a stream: "import --store -" made a store
# named "-" (exit 0), "--config -" said "-: No such file or directory".
( bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  cd "$TMP" && "$bin" import --store - "$HIST" >out 2>err; echo $? >rc )
[ "$(cat "$TMP/rc")" = 2 ] && grep -qF "llmroute import: --store: '-' is not standard input or output here: give a file name (./- for a file named '-')" "$TMP/err" &&
    [ ! -e "$TMP/-" ] && ok || bad "import --store -: rc $(cat "$TMP/rc"), $(cat "$TMP/err"), $(ls "$TMP"/-* 2>&1)"
# A store named by blank space alone was made as a file of that name.
( bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  cd "$TMP" && "$bin" import --store "  " "$HIST" >out 2>err; echo $? >rc )
[ "$(cat "$TMP/rc")" = 2 ] && grep -qF "llmroute import: --store: the value is blank (only spaces, tabs or line breaks): give a file name" "$TMP/err" &&
    [ ! -e "$TMP/  " ] && ok || bad "import --store '  ': rc $(cat "$TMP/rc"), $(cat "$TMP/err")"
# So was a plot or a port file, and a config of that name was looked for.
# Each runs in $TMP, where a file named " " would be made.
blank_refused() { # OPTION COMMAND ARGS...
    local opt=$1
    shift
    ( bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
      cd "$TMP" && timeout 20 "$bin" "$@" >out 2>err </dev/null; echo $? >rc )
    [ "$(cat "$TMP/rc")" = 2 ] &&
        grep -qF -- "$opt: the value is blank (only spaces, tabs or line breaks): give a file name" "$TMP/err" &&
        [ ! -e "$TMP/ " ] && ok || bad "$1 $opt ' ': rc $(cat "$TMP/rc"), $(cat "$TMP/err")"
    rm -f "$TMP/ "
}
blank_refused --plot eval --config "$CFG" --data "$HIST" --plot " "
blank_refused --port-file serve --config "$CFG" --store "$TMP/h.db" --listen 127.0.0.1:0 --port-file " "
blank_refused --config route --config " " hello
printf '{"models": [{"name": "a", "backend": "mock"}], "router": {"store": " \\t "}}' >"$TMP/blankstore.json"
expect "check-config: a blank router.store" 2 \
    "router.store: the name is blank (only spaces, tabs or line breaks): expected a file name" -- \
    "$BIN" check-config "$TMP/blankstore.json"
expect "route --config -" 2 "--config: '-' is not standard input or output here" -- \
    "$BIN" route --config - q
expect "eval --plot -" 2 "--plot: '-' is not standard input or output here" -- \
    "$BIN" eval --config "$CFG" --data "$HIST" --plot -
expect "serve --port-file=-" 2 "--port-file: '-' is not standard input or output here" -- \
    timeout 20 "$BIN" serve --config "$CFG" --store "$TMP/h.db" --listen 127.0.0.1:0 --port-file=-
expect "check-config -" 2 "llmroute check-config: '-' is not standard input here" -- \
    "$BIN" check-config -
( bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  cd "$TMP" && "$bin" import --store ./- "$HIST" >out 2>err; echo $? >rc )
[ "$(cat "$TMP/rc")" = 0 ] && [ -s "$TMP/-" ] && ok || bad "import --store ./-: rc $(cat "$TMP/rc"), $(cat "$TMP/err")"
for s in sequential smart; do
    expect "route --strategy $s: an empty query argument" 2 "query 2: argument 2 is empty" -- \
        "$BIN" route --config "$CFG" --strategy "$s" --store "$TMP/h.db" q ""
    ! [ -s "$TMP/out" ] && ok || bad "route $s with an empty query printed $(cat "$TMP/out")"
    expect "route --strategy $s: a blank query argument" 2 "query 1: argument 1 is blank" -- \
        "$BIN" route --config "$CFG" --strategy "$s" --store "$TMP/h.db" "  " q
done

# --- a model name with a comma could not be selected by --models ---
printf '{"models": [{"name": "a,b", "backend": "mock"}]}' >"$TMP/comma.json"
expect "check-config: a comma in a model name" 2 \
    "models[0].name: 'a,b' contains a comma, which separates the names in --models" -- \
    "$BIN" check-config "$TMP/comma.json"
# --- a route's fallback that is one of its own models is warned about ---
printf '{"models": [{"name": "a", "backend": "mock"}], "routes": [{"name": "r", "models": ["a"], "fallbacks": ["a"]}]}' >"$TMP/fb.json"
expect "check-config: a fallback among the route's models" 0 \
    "warning: $TMP/fb.json: routes[0].fallbacks[0]: 'a' is also one of the route's models (routes[0].models[0]): it is ranked with them, not tried after them" -- \
    "$BIN" check-config "$TMP/fb.json"
# --- a route with more candidates and fallbacks than retry.max_attempts
# (its own over the server's) never reaches its last fallbacks by failures ---
M3='"models": [{"name": "a", "backend": "mock"}, {"name": "b", "backend": "mock"}, {"name": "c", "backend": "mock"}]'
printf '{%s, "routes": [{"name": "r", "models": ["a", "b"], "fallbacks": ["c"], "retry": {"max_attempts": 2}}]}' "$M3" >"$TMP/ma.json"
expect "check-config: fallbacks past the route's max_attempts" 0 \
    "warning: $TMP/ma.json: routes[0] (r): 3 candidates and fallbacks, more than retry.max_attempts (2): its last fallbacks are never tried after failures, only past models skipped for an open breaker or a full max_concurrency" -- \
    "$BIN" check-config "$TMP/ma.json"
printf '{%s, "server": {"resilience": {"retry": {"max_attempts": 2}}}, "routes": [{"name": "r", "models": ["a", "b"], "fallbacks": ["c"]}]}' "$M3" >"$TMP/ma-server.json"
expect "check-config: fallbacks past the server's max_attempts" 0 \
    "routes[0] (r): 3 candidates and fallbacks, more than retry.max_attempts (2)" -- \
    "$BIN" check-config "$TMP/ma-server.json"
# Room for every one (the route's 3 over the server's 2), or a fallback that
# is one of the route's models (ranked with them): nothing about attempts.
printf '{%s, "server": {"resilience": {"retry": {"max_attempts": 2}}}, "routes": [{"name": "r", "models": ["a", "b"], "fallbacks": ["c"], "retry": {"max_attempts": 3}}, {"name": "s", "models": ["a", "b"], "fallbacks": ["b"]}]}' "$M3" >"$TMP/ma-room.json"
"$BIN" check-config "$TMP/ma-room.json" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 0 ] && ! grep -q "max_attempts" "$TMP/err" && ok ||
    bad "check-config: fallbacks within max_attempts: exit $rc, $(cat "$TMP/err")"

# --- a base_url without http:// or https:// shows its value and the model;
# a scheme is taken in any case (RFC 3986 3.1) ---
printf '{"models": [{"name": "q7", "backend": "vllm", "base_url": "localhost:8000/v1"}]}' >"$TMP/bu.json"
expect "check-config: base_url without a scheme" 2 \
    "models[0] (q7): base_url 'localhost:8000/v1' is not an http:// or https:// URL" -- \
    "$BIN" check-config "$TMP/bu.json"
long=$(head -c 300 /dev/zero | tr '\0' h)
printf '{"models": [{"name": "q7", "backend": "vllm", "base_url": "%s/v1"}]}' "$long" >"$TMP/bu.json"
expect "check-config: a long base_url without a scheme" 2 \
    "models[0] (q7): base_url '$(head -c 200 /dev/zero | tr '\0' h)...' is not an http://" -- \
    "$BIN" check-config "$TMP/bu.json"
printf '{"models": [{"name": "a", "backend": "vllm", "base_url": "HTTP://127.0.0.1:8000/v1"},
  {"name": "b", "backend": "vllm", "base_url": "Https://h/v1"}],
  "router": {"embedding": {"base_url": "HTTP://127.0.0.1:9/v1", "model": "m"}}}' >"$TMP/bu.json"
expect "check-config: an upper-case scheme" 0 "" -- "$BIN" check-config "$TMP/bu.json"
printf '{"models": [{"name": "a", "backend": "vllm", "base_url": "HTTP://h:99999/v1"}]}' >"$TMP/bu.json"
expect "check-config: an upper-case scheme's port is checked" 2 \
    "models[0] (a): base_url 'HTTP://h:99999/v1' has a port that is not a number from 1 to 65535" -- \
    "$BIN" check-config "$TMP/bu.json"
for f in "$SRC"/examples/*.json; do
    expect "check-config $(basename "$f") still loads" 0 "" -- \
        "$BIN" check-config "$f" --store "$TMP/h.db"
done

# --- every query is checked before any is printed ---
for s in sequential smart; do
    printf 'good\n\xff\n' |
        "$BIN" route --config "$CFG" --strategy "$s" --store "$TMP/h.db" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ "$rc" = 2 ] && grep -qF "query 2 (standard input, line 2): query: not valid UTF-8 at byte 0" "$TMP/err" &&
        ! [ -s "$TMP/out" ] && ok ||
        bad "route $s, a bad line after a good one: exit $rc, out $(cat "$TMP/out"), $(cat "$TMP/err")"
done
head -c 262145 /dev/zero | tr '\0' a >"$TMP/long.txt"
(echo good; cat "$TMP/long.txt"; echo) |
    "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -qF "query 2 (standard input, line 2): query: 262145 bytes is over the cap of 262144" "$TMP/err" &&
    ! [ -s "$TMP/out" ] && ok || bad "route, an overlong line: exit $rc, $(cat "$TMP/err")"
# Blank lines are skipped, so query 3 is line 6 here: the message names
# both, with or without --batch; an argument has no line.
for batch in "" --batch; do
    printf 'a\n\n\nb\n \n\xffc\n' |
        "$BIN" route --config "$CFG" --strategy smart --store "$TMP/h.db" $batch >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ "$rc" = 2 ] && grep -qF "query 3 (standard input, line 6): query: not valid UTF-8 at byte 0" "$TMP/err" &&
        ! [ -s "$TMP/out" ] && ok || bad "route $batch, a bad line after blank ones: exit $rc, $(cat "$TMP/err")"
done
# A byte order mark at the start of standard input is no part of the first
# query: "abcd" is one token (four bytes), with or without it.
out=$(printf '\357\273\277abcd\nefgh\n' | "$BIN" route --config "$CFG" --json 2>"$TMP/err")
rc=$?
[ "$rc" = 0 ] && [ "$(printf '%s\n' "$out" | grep -c '"input_tokens":1,')" = 2 ] && ok ||
    bad "route, a BOM before the first query: exit $rc, $out $(cat "$TMP/err")"
out=$(printf '\357\273\277\r\nq\n' | "$BIN" route --config "$CFG" --models gpt-4o-mini,gpt-4o 2>"$TMP/err")
rc=$?
[ "$rc" = 0 ] && [ "$out" = gpt-4o-mini ] && ok ||
    bad "route, a BOM alone on the first line: exit $rc, [$out] $(cat "$TMP/err")"
expect "route: a bad argument has no line" 2 "llmroute route: query 2: query: not valid UTF-8 at byte 0" -- \
    "$BIN" route --config "$CFG" a $'\xff'

# --- config numbers that are no integers show their value ---
printf '{"models": [{"name": "a", "backend": "mock"}], "router": {"n_similar": 1.5}}' >"$TMP/ns.json"
expect "check-config: router.n_similar 1.5" 2 "router.n_similar: expected an integer from 1 to" -- \
    "$BIN" check-config "$TMP/ns.json"
grep -qF ", got 1.5" "$TMP/err" && ok || bad "n_similar 1.5: $(cat "$TMP/err")"
printf '{"models": [{"name": "a", "backend": "mock", "capacity": 1e10}]}' >"$TMP/cap.json"
expect "check-config: capacity 1e10" 2 \
    "models[0].capacity: expected an integer from 0 to 1000000000, got 1e+10" -- \
    "$BIN" check-config "$TMP/cap.json"
# The gateway's integers (server, resilience, mock, a model's retry) say
# what they were given too: "expected an integer from 1 to 1048576" for 10.0
# did not say why 10 was refused.
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"max_connections": 10.0}}' >"$TMP/mc.json"
expect "check-config: server.max_connections 10.0" 2 \
    "server.max_connections: expected an integer from 1 to 1048576, got 10 written as a real number" -- \
    "$BIN" check-config "$TMP/mc.json"
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"idle_timeout_ms": "60000"}}' >"$TMP/it.json"
expect "check-config: server.idle_timeout_ms a string" 2 \
    "server.idle_timeout_ms: expected an integer from 0 to 86400000, got a string" -- \
    "$BIN" check-config "$TMP/it.json"
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"resilience": {"retry": {"max_attempts": 0}}}}' >"$TMP/ma.json"
expect "check-config: resilience.retry.max_attempts 0" 2 \
    "server.resilience.retry.max_attempts: expected an integer from 1 to 100, got 0" -- \
    "$BIN" check-config "$TMP/ma.json"
printf '{"models": [{"name": "a", "backend": "mock", "mock": {"chunks": "4"}}]}' >"$TMP/mk.json"
expect "serve: mock.chunks a string" 2 "models[0].mock.chunks: expected an integer from 1 to 100000, got a string" -- \
    "$BIN" serve --config "$TMP/mk.json" --listen 127.0.0.1:0

# --- null is "unset, the default" for every optional member, in the
# gateway's part as in the library's (max_concurrency: null) ---
printf '{"models": [{"name": "a", "backend": "mock", "max_concurrency": null,
    "mock": {"chunks": null, "latency_ms": null, "content": null},
    "retry": {"max_retries": null, "max_attempts": null}, "timeouts": null},
  {"name": "b", "backend": "mock", "mock": null, "retry": null, "timeouts": {"total_ms": null}}],
 "routes": [{"name": "r", "models": ["a"], "fallbacks": null, "retry": null, "timeouts": null}],
 "server": {"max_body_bytes": null, "listen": null, "log_requests": null, "api_keys_env": null,
   "resilience": {"retry": {"max_attempts": null, "on": {"server_error": null}}, "timeouts": null,
     "breaker": {"failure_rate": null, "when_all_open": null}, "queue": null}}}' >"$TMP/nul.json"
expect "check-config: null members" 0 "ok: 2 models, 1 routes" -- "$BIN" check-config "$TMP/nul.json"
! grep -q warning "$TMP/err" && ok || bad "check-config: null members warned: $(cat "$TMP/err")"
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"resilience": null, "max_body_bytes": null}}' >"$TMP/nul.json"
expect "check-config: server.resilience null" 0 "" -- "$BIN" check-config "$TMP/nul.json"
# A top-level section given as null is still refused, as routes: null is.
printf '{"models": [{"name": "a", "backend": "mock"}], "server": null}' >"$TMP/nul.json"
expect "check-config: server null" 2 "server: expected an object" -- "$BIN" check-config "$TMP/nul.json"

# A listen port is digits: "+80", " 80" and "-0" were taken as 80 and 0.
for port in '+80' ' 80' '-0'; do
    printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"listen": "127.0.0.1:%s"}}' "$port" >"$TMP/ls.json"
    expect "check-config: server.listen port '$port'" 2 \
        "server.listen: expected a port from 0 to 65535, got '$port'" -- "$BIN" check-config "$TMP/ls.json"
    expect "serve: --listen port '$port'" 2 "--listen: expected a port from 0 to 65535, got '$port'" -- \
        "$BIN" serve --config "$TMP/mk.json" --listen "127.0.0.1:$port"
done
# An IPv6 address goes in brackets: "::1:80" was read as [::1]:80, though
# it could as well be the address ::1:80.
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"listen": "::1:80"}}' >"$TMP/ls.json"
expect "check-config: server.listen ::1:80" 2 \
    "server.listen: an IPv6 address goes in brackets, as [::1]:80, got '::1:80'" -- \
    "$BIN" check-config "$TMP/ls.json"
expect "serve: --listen ::1:80" 2 "--listen: an IPv6 address goes in brackets, as [::1]:80, got '::1:80'" -- \
    "$BIN" serve --config "$TMP/mk.json" --listen ::1:80
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"listen": "[::1]:80"}}' >"$TMP/ls.json"
expect "check-config: server.listen [::1]:80" 0 "" -- "$BIN" check-config "$TMP/ls.json"

# --- /v1/route: an empty list of queries is a bad value, not a bad type ---
"$BIN" serve --config "$CFG" --store "$TMP/h.db" --listen 127.0.0.1:0 --port-file "$TMP/port" >/dev/null 2>"$TMP/serve.err" &
serve_pid=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
if [ -s "$TMP/port" ]; then
    python3 - "$(cat "$TMP/port")" <<'PY' && ok || bad "/v1/route codes"
import http.client, json, sys
def post(body):
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    c.request("POST", "/v1/route", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read())["error"]
for body, code in (('{"queries": []}', "invalid_value"), ('{"queries": {}}', "invalid_type"),
                   ('{}', "missing_required_parameter")):
    st, e = post(body)
    assert st == 400 and e["code"] == code and e["param"] == "queries", (body, st, e)
PY
else
    bad "serve did not start: $(cat "$TMP/serve.err")"
fi
kill "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null
serve_pid=

summary
