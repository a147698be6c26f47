#!/usr/bin/env bash
# End-to-end tests of input that is bad in less common ways: data that
# never ends (a device, a pipe), memory running out on a long line, numbers
# written oddly, control characters in what an error message quotes, and
# commands that fail after creating a store. Each must end in a clear
# one-line error and a documented exit code, with nothing stored.
#   usage: test_bad_input.sh /path/to/llmroute /path/to/source
set -u
BIN=$1
SRC=$2
CFG=$SRC/examples/llmroute.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

# memcapped KB MB CMD...: CMD with its memory bounded. A normal build runs
# under `ulimit -v KB`; one under AddressSanitizer, which reserves terabytes
# of address space at start, instead has each allocation over MB megabytes
# fail (its allocator then returns NULL as malloc does).
if (ulimit -v 200000; "$BIN" version) >/dev/null 2>&1; then
    memcapped() { local kb=$1; shift 2; (ulimit -v "$kb"; exec "$@"); }
else
    memcapped() {
        local mb=$2; shift 2
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=$mb" "$@"
    }
fi

# xs N: N bytes 'x', no newline.
xs() { head -c "$1" /dev/zero | tr '\0' x; }

# --- eval --data: a device or a pipe is read within the data file's caps ---
expect "eval --data /dev/zero: a line over the cap" 2 \
    "/dev/zero: line 1 is over the cap of 67108864 bytes for a line of JSON lines" -- \
    timeout 60 "$BIN" eval --config "$CFG" --data /dev/zero
(printf '{"query": "q"}\n'; xs 70000000) >"$TMP/longline.jsonl"
expect "eval: a line of JSON lines over the cap" 2 \
    "longline.jsonl: line 2 is over the cap of 67108864 bytes" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/longline.jsonl"
rm -f "$TMP/longline.jsonl"

# --- out of memory on a long line is an error, not the end of input ---
# (getline() then returns -1 as at the end, with no error flag set.)
(printf 'q1\n'; xs 300000000; printf '\nq3\n') |
    memcapped 400000 200 "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && grep -qF "out of memory reading standard input" "$TMP/err" && ! [ -s "$TMP/out" ] &&
    ok || bad "route: out of memory on a long line: exit $rc, $(cat "$TMP/err" "$TMP/out")"
# eval says it too, with the exit code of a runtime failure (1), as route
# and import give it.
(printf '{"query": "q"}\n'; xs 60000000; printf '\n') |
    memcapped 60000 32 "$BIN" eval --config "$CFG" --data /dev/stdin >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 1 ] && grep -qF "out of memory reading /dev/stdin (line 2)" "$TMP/err" &&
    ok || bad "eval: out of memory on a long line: exit $rc, $(cat "$TMP/err")"

# --- serve: a store it made is removed again when it fails to start ---
# Else an empty store stamped with the config's embedder is left, which
# refuses a later import with another embedder.
expect "serve: a bad --listen, before the store is made" 2 \
    "llmroute serve: --listen: expected HOST:PORT, got 'nope'" -- \
    "$BIN" serve --config "$CFG" --store "$TMP/fresh.db" --listen nope
! grep -qF "llmroute.json" "$TMP/err" && ok || bad "serve: --listen's error names the config: $(cat "$TMP/err")"
! ls "$TMP"/fresh.db* >/dev/null 2>&1 && ok || bad "serve --listen nope left $(ls "$TMP"/fresh.db*)"
# The port in use: a listener of our own holds it.
python3 -c '
import socket, sys, time
s = socket.socket()
for port in range(19790, 19800):
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        continue
s.listen()
print(port, flush=True)
time.sleep(30)
' >"$TMP/port" &
holder=$!
for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
expect "serve: the port in use" 1 "removed '$TMP/fresh.db', which this start created" -- \
    "$BIN" serve --config "$CFG" --store "$TMP/fresh.db" --listen "127.0.0.1:$(cat "$TMP/port")"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
! ls "$TMP"/fresh.db* >/dev/null 2>&1 && ok || bad "serve on a port in use left $(ls "$TMP"/fresh.db*)"
# A config serve refuses (a route over an unknown model) after the store is made.
printf '{"models": [{"name": "a", "backend": "mock"}], "routes": [{"name": "r", "models": ["zz"]}]}' \
    >"$TMP/badroute.json"
expect "serve: a config refused after the store is made" 2 "" -- \
    "$BIN" serve --config "$TMP/badroute.json" --store "$TMP/fresh.db" --listen 127.0.0.1:0
! ls "$TMP"/fresh.db* >/dev/null 2>&1 && ok || bad "serve with a bad config left $(ls "$TMP"/fresh.db*)"
# A store that was there is kept, empty or not.
"$BIN" import --store "$TMP/kept.db" >/dev/null 2>&1
expect "serve: an existing empty store is kept" 2 "" -- \
    "$BIN" serve --config "$TMP/badroute.json" --store "$TMP/kept.db" --listen 127.0.0.1:0
[ -s "$TMP/kept.db" ] && ok || bad "serve removed a store it did not make"

# --- an empty file at the store's path is no store: refused, left as it is ---
: >"$TMP/zero.db"
printf '{"query": "q", "outputs": [' >"$TMP/trunc.jsonl"
expect "import into an empty file" 1 "history store '$TMP/zero.db': file is not a database (it is empty)" -- \
    "$BIN" import --store "$TMP/zero.db" "$TMP/trunc.jsonl"
[ -f "$TMP/zero.db" ] && ! [ -s "$TMP/zero.db" ] && ! ls "$TMP"/zero.db-* >/dev/null 2>&1 && ok ||
    bad "import changed an empty file: $(ls -l "$TMP"/zero.db*)"
expect "import with no data into an empty file" 1 "file is not a database (it is empty)" -- \
    "$BIN" import --store "$TMP/zero.db"
expect "serve on an empty file" 2 "file is not a database (it is empty)" -- \
    "$BIN" serve --config "$CFG" --store "$TMP/zero.db" --listen 127.0.0.1:0
! [ -s "$TMP/zero.db" ] && ok || bad "serve changed an empty file: $(ls -l "$TMP"/zero.db*)"
expect "route on an empty file" 1 "is not a history store" -- \
    "$BIN" route --config "$CFG" --store "$TMP/zero.db" --strategy smart q
! [ -s "$TMP/zero.db" ] && ok || bad "route changed an empty file"

# --- import: a report lost after the import is told apart (exit 4) ---
if [ -w /dev/full ]; then
    "$BIN" import --store "$TMP/full.db" "$SRC/examples/history.jsonl" >/dev/full 2>"$TMP/err"
    rc=$?
    [ "$rc" = 4 ] && grep -qF "cannot write standard output" "$TMP/err" &&
        grep -qF "the import itself succeeded" "$TMP/err" && ok ||
        bad "import >/dev/full: exit $rc, $(cat "$TMP/err")"
    [ "$(count "$TMP/full.db")" = "$TMP/full.db: 64 records" ] && ok ||
        bad "import >/dev/full: $(count "$TMP/full.db")"
    # A failed import whose report is lost too stays a failure (1).
    "$BIN" import --store "$TMP/full.db" "$TMP/trunc.jsonl" >/dev/full 2>"$TMP/err"
    rc=$?
    [ "$rc" = 1 ] && ok || bad "failed import >/dev/full: exit $rc, $(cat "$TMP/err")"
    # Other commands store nothing: a lost output is a runtime error (1).
    "$BIN" route --config "$CFG" q >/dev/full 2>"$TMP/err"
    rc=$?
    [ "$rc" = 1 ] && ! grep -qF "import itself" "$TMP/err" && ok ||
        bad "route >/dev/full: exit $rc, $(cat "$TMP/err")"
fi
expect "import --help names exit code 4" 0 "4 every file was imported" -- "$BIN" import --help
expect "llmroute --help names exit code 4" 0 "4 import: imported, but its report could not be written" -- \
    "$BIN" --help

# --- a smart default over unpriced models is refused before the first request ---
printf '{"models": [{"name": "a", "backend": "mock"}, {"name": "b", "backend": "mock"}], "router": {"strategy": "smart"}}' \
    >"$TMP/smart_unpriced.json"
"$BIN" import --store "$TMP/hist.db" "$SRC/examples/history.jsonl" >/dev/null 2>&1
expect "check-config: smart default over unpriced models" 2 \
    "router.strategy (smart, over every model): model 'a' has no cost_per_input_token" -- \
    "$BIN" check-config "$TMP/smart_unpriced.json" --store "$TMP/hist.db"
expect "serve: smart default over unpriced models" 2 \
    "router.strategy (smart, over every model): model 'a' has no cost_per_input_token" -- \
    "$BIN" serve --config "$TMP/smart_unpriced.json" --store "$TMP/hist.db" --listen 127.0.0.1:0
expect "route: smart default over unpriced models" 2 "model 'a' has no cost_per_input_token" -- \
    "$BIN" route --config "$TMP/smart_unpriced.json" --store "$TMP/hist.db" q
# One model needs no price.
printf '{"models": [{"name": "a", "backend": "mock"}], "router": {"strategy": "smart"}}' \
    >"$TMP/smart_one.json"
expect "check-config: smart default over one unpriced model" 0 "" -- \
    "$BIN" check-config "$TMP/smart_one.json" --store "$TMP/hist.db"

summary
