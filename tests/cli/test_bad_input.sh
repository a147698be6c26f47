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

summary
