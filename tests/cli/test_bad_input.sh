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
rm -f "$TMP/longline.jsonl"

# --- import: the same cap on a line of JSON lines, with or without --strict ---
# A line over it is no record to skip: the file is refused whole (exit 1,
# the store unchanged), as a line that is not JSON is, and as eval refuses
# it, even when the line is a valid record (here one with a long field that
# the import ignores). Both loaders count a line with its newline, so a
# record of exactly the cap is read by both.
REC='{"query": "q", "input_token_length": 1, "outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 1}, {"model_name": "gpt-4o-mini", "correctness": false, "output_token_length": 1}]}'
PAD_PRE='{"pad": "'
PAD_SUF=${REC#\{}
PAD_SUF='", '$PAD_SUF
# padded N: a record line (newline included) of N bytes.
padded() { printf '%s' "$PAD_PRE"; xs $(($1 - ${#PAD_PRE} - ${#PAD_SUF} - 1)); printf '%s\n' "$PAD_SUF"; }
printf '%s\n' "$REC" >"$TMP/one.jsonl"
"$BIN" import --store "$TMP/cap.db" "$TMP/one.jsonl" >/dev/null 2>&1
(printf '%s\n' "$REC"; padded 67108865; printf '%s\n' "$REC") >"$TMP/overcap.jsonl"
for strict in "" --strict; do
    expect "import ${strict:-without --strict}: a line of JSON lines over the cap" 1 \
        "overcap.jsonl: line 2 is over the cap of 67108864 bytes for a line of JSON lines: nothing imported from this file" -- \
        "$BIN" import --store "$TMP/cap.db" $strict "$TMP/overcap.jsonl"
    [ "$(count "$TMP/cap.db")" = "$TMP/cap.db: 1 records" ] && ok ||
        bad "import ${strict:-without --strict} over the line cap changed the store: $(count "$TMP/cap.db")"
done
expect "eval: the same line over the cap" 2 \
    "overcap.jsonl: line 2 is over the cap of 67108864 bytes for a line of JSON lines" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/overcap.jsonl"
(printf '%s\n' "$REC"; padded 67108864; printf '%s\n' "$REC") >"$TMP/atcap.jsonl"
expect "import: a record line of exactly the cap is imported" 0 \
    "atcap.jsonl: imported 3 of 3 records" -- \
    "$BIN" import --store "$TMP/cap.db" --strict "$TMP/atcap.jsonl"
expect "eval: a record line of exactly the cap is read" 0 "3 queries, 2 candidate models" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/atcap.jsonl"
rm -f "$TMP/overcap.jsonl" "$TMP/atcap.jsonl"

# --- a long line is refused at the cap of a query, not read on ---
# (route read a line whole, so 300 MB of it under a memory cap said "out of
# memory", and from /dev/zero it took all the memory there was.) It is
# refused once it passes 256 KiB and its line ending, within a small memory
# cap, before any query is routed.
(printf 'q1\n'; xs 300000000; printf '\nq3\n') |
    memcapped 200000 200 "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -qF "standard input, line 2: over the cap of a query (262144 bytes)" \
    "$TMP/err" && ! [ -s "$TMP/out" ] &&
    ok || bad "route: a 300 MB line: exit $rc, $(cat "$TMP/err" "$TMP/out")"
memcapped 200000 200 "$BIN" route --config "$CFG" </dev/zero >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -qF "line 1: over the cap of a query" "$TMP/err" &&
    ok || bad "route: a line from /dev/zero: exit $rc, $(cat "$TMP/err")"
# The longest line read: the cap and a CRLF; one byte more is the library's
# refusal of a query over the cap.
(printf 'q1\n'; xs 262144; printf '\r\n') | "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 0 ] && [ "$(wc -l <"$TMP/out")" = 2 ] &&
    ok || bad "route: a query of exactly the cap: exit $rc, $(cat "$TMP/err")"
(printf 'q1\n'; xs 262145; printf '\n') | "$BIN" route --config "$CFG" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" = 2 ] && grep -qF "262145 bytes is over the cap of 262144" "$TMP/err" &&
    ok || bad "route: a query one byte over the cap: exit $rc, $(cat "$TMP/err")"
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

# --- serve --port-file naming a file serve reads is refused, the file kept ---
# The port is written to FILE.tmp and renamed over FILE: a --port-file
# naming the store replaced its records with the port number, and serve
# went on without a word. The config, the store (given, from router.store,
# or about to be made), SQLite's files beside it and FILE.tmp are checked.
"$BIN" import --store "$TMP/pf.db" "$SRC/examples/history.jsonl" >/dev/null 2>&1
cp "$CFG" "$TMP/pf.json"
sed '/"router"/s|"strategy": "sequential",|"strategy": "sequential", "store": "'"$TMP"'/rs.db",|' "$CFG" >"$TMP/rs.json"
cp "$TMP/pf.db" "$TMP/rs.db"
cp "$TMP/pf.db" "$TMP/pt.tmp"
for pf in "pf.db:$TMP/pf.db:history store that --store names" \
          "pf.db-wal:$TMP/pf.db:history store's -wal file that --store names" \
          "pf.json:$TMP/pf.db:file --config names" \
          "pt:$TMP/pt.tmp:its temporary file $TMP/pt.tmp is the history store" \
          "new.db:$TMP/new.db:history store that --store names"; do
    IFS=: read -r name store want <<<"$pf"
    expect "serve --port-file $name" 2 "--port-file $TMP/$name: " -- \
        timeout 20 "$BIN" serve --config "$TMP/pf.json" --store "$store" --listen 127.0.0.1:0 \
        --port-file "$TMP/$name"
    grep -qF "$want" "$TMP/err" && ok || bad "serve --port-file $name: $(cat "$TMP/err")"
done
( cd "$TMP" && timeout 20 "$BIN" serve --config pf.json --store ./pf.db --listen 127.0.0.1:0 \
    --port-file "$TMP/pf.db" >/dev/null 2>&1; echo $? >rc )
[ "$(cat "$TMP/rc")" = 2 ] && ok || bad "serve --port-file, the store spelt another way: rc $(cat "$TMP/rc")"
expect "serve --port-file: the config's router.store" 2 \
    "--port-file $TMP/rs.db: is the history store that router.store names" -- \
    timeout 20 "$BIN" serve --config "$TMP/rs.json" --listen 127.0.0.1:0 --port-file "$TMP/rs.db"
for s in pf.db rs.db pt.tmp; do
    [ "$(count "$TMP/$s")" = "$TMP/$s: 64 records" ] && ok || bad "serve --port-file changed $s: $(count "$TMP/$s")"
done
cmp -s "$CFG" "$TMP/pf.json" && ok || bad "serve --port-file changed the config"
! ls "$TMP"/new.db* >/dev/null 2>&1 && ok || bad "serve --port-file new.db made $(ls "$TMP"/new.db*)"

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
expect "route on an empty file" 1 "history store '$TMP/zero.db': file is not a database (it is empty)" -- \
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
    # Nor does import's help, in any of its spellings.
    for how in "import --help" "import -h" "help import"; do
        # shellcheck disable=SC2086
        "$BIN" $how >/dev/full 2>"$TMP/err"
        rc=$?
        [ "$rc" = 1 ] && grep -qF "cannot write standard output" "$TMP/err" &&
            ! grep -qF "import itself" "$TMP/err" && ok ||
            bad "$how >/dev/full: exit $rc, $(cat "$TMP/err")"
    done
fi
# A reader already gone (a closed pipe): the same exit 4, every file imported,
# where SIGPIPE killed the import (exit by signal) after storing its records.
rm -f "$TMP/pipe.db"
rc=$(python3 - "$BIN" "$TMP/pipe.db" "$SRC/examples/history.jsonl" "$TMP/two.jsonl" 2>"$TMP/err" <<'PY'
import os, subprocess, sys
r, w = os.pipe()
os.close(r)  # nobody will read the report
with open(sys.argv[3]) as f, open(sys.argv[4], "w") as g:
    g.write(f.read().replace('"query": "', '"query": "again: '))
p = subprocess.run([sys.argv[1], "import", "--store", sys.argv[2], sys.argv[3], sys.argv[4]],
                   stdout=w, stderr=subprocess.PIPE)
sys.stderr.write(p.stderr.decode())
print(p.returncode)
PY
)
[ "$rc" = 4 ] && grep -qF "the import itself succeeded" "$TMP/err" && ok ||
    bad "import to a closed pipe: exit $rc, $(cat "$TMP/err")"
[ "$(count "$TMP/pipe.db")" = "$TMP/pipe.db: 128 records" ] && ok ||
    bad "import to a closed pipe: $(count "$TMP/pipe.db")"
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

# --- an error quoting control characters is still one line, with no escape sequence ---
one_line_escaped() { # NAME: $TMP/err is one line, no raw ESC or CR, \x1b written out
    if [ "$(wc -l <"$TMP/err")" = 1 ] && ! grep -q $'[\x1b\r]' "$TMP/err" &&
        grep -qF '\x1b' "$TMP/err"; then
        ok
    else
        bad "$1: $(cat -A "$TMP/err")"
    fi
}
"$BIN" route --config "$CFG" --models $'gpt\nx\x1b[31mRED' q >/dev/null 2>"$TMP/err"
one_line_escaped "route --models with a newline and an ESC"
grep -qF "unknown model 'gpt\nx\x1b[31mRED'" "$TMP/err" && ok || bad "route --models escaped: $(cat -A "$TMP/err")"
"$BIN" import --store "$TMP/"$'a\x1b[2Jb\r'"/x.db" >/dev/null 2>"$TMP/err"
one_line_escaped "import --store with an ESC and a CR"
"$BIN" serve --config "$CFG" --store "$TMP/"$'no\x1bdir\n'"/x.db" --listen 127.0.0.1:0 >/dev/null 2>"$TMP/err"
one_line_escaped "serve --store with an ESC and a newline"

# --- numbers in options are plain decimal, the same in every option ---
for v in 0x10 ' 1' '1 ' +1 inf nan 1e400; do
    expect "--budget '$v'" 2 "--budget: expected a number from 0 to 1e+12, got '$v'" -- \
        "$BIN" route --config "$CFG" --strategy smart --store "$TMP/hist.db" --batch --budget "$v" q
done
expect "--requirement 0x0.8p0" 2 "--requirement: expected a number from 0 to 1, got '0x0.8p0'" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/hist.db" --requirement 0x0.8p0 q
for v in 0.5 .5 5e-1 1. 0; do
    expect "--requirement '$v'" 0 "" -- \
        "$BIN" route --config "$CFG" --strategy smart --store "$TMP/hist.db" --requirement "$v" q
done
for v in +5 ' 5' '5 ' 0x10 -0 5.0 1e3; do
    expect "--input-tokens '$v'" 2 "--input-tokens: expected an integer from 0 to 1000000000, got '$v'" -- \
        "$BIN" route --config "$CFG" --input-tokens "$v" q
done
expect "--input-tokens 010 is decimal" 0 "" -- "$BIN" route --config "$CFG" --input-tokens 010 q
# A list's items are taken without the blank around them, not within.
expect "eval --alpha '0. 8'" 2 "--alpha: expected a number from 0 to 1, got '0. 8'" -- \
    "$BIN" eval --config "$CFG" --data "$SRC/examples/history.jsonl" --alpha '0.7, 0. 8'
expect "eval --seed +3" 2 "--seed: expected an integer from 1 to 2147483647, got '+3'" -- \
    "$BIN" eval --config "$CFG" --data "$SRC/examples/history.jsonl" --seed +3

# --- a NUL character (\u0000, valid JSON) makes its record bad, not its file ---
# In the query or in a field nothing reads: the record is skipped and
# counted, as any bad record is (--strict refuses the file).
good='{"query": "q", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}'
nul_note='{"query": "q", "note": "x\u0000y", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}'
nul_query='{"query": "a\u0000b", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}'
printf '%s\n%s\n%s\n%s\n' "$good" "$nul_note" "$nul_query" "$good" >"$TMP/nul.jsonl"
printf '[%s,\n%s,\n%s,\n%s]\n' "$good" "$nul_note" "$nul_query" "$good" >"$TMP/nul.json"
for f in nul.jsonl nul.json; do
    expect "import: a NUL in $f" 0 \
        "imported 2 of 4 records, skipped 2 bad (first: record 1 (line 2): note: a NUL character (\u0000) is not allowed)" -- \
        "$BIN" import --store "$TMP/nul-$f.db" "$TMP/$f"
    expect "import --strict: a NUL in $f" 1 \
        "$f: record 1 (line 2): note: a NUL character (\u0000) is not allowed" -- \
        "$BIN" import --strict --store "$TMP/nul-strict.db" "$TMP/$f"
    expect "eval: a NUL in $f" 0 "skipped 2 bad (first: record 1 (line 2): note: a NUL" -- \
        "$BIN" eval --config "$CFG" --data "$TMP/$f"
    ! grep -qF JSON_ALLOW_NUL "$TMP/err" && ok || bad "eval: $f: $(cat "$TMP/err")"
done
printf '%s\n' "$nul_query" >"$TMP/nulq.jsonl"
# (Its one record bad, the file imports nothing and fails: see below.)
expect "import: a NUL in a query" 1 "record 0 (line 1): query: a NUL character (\u0000) is not allowed" -- \
    "$BIN" import --store "$TMP/nulq.db" "$TMP/nulq.jsonl"
# A key cannot hold one: that is a parse error, which refuses the file.
printf '{"query": "q", "x\\u0000": 1}\n' >"$TMP/nulkey.jsonl"
expect "import: a NUL in a key" 1 "nulkey.jsonl:1:24: a NUL character (\u0000) is not allowed in a key near" -- \
    "$BIN" import --store "$TMP/nulkey.db" "$TMP/nulkey.jsonl"
printf '{"models": [{"name": "a\\u0000"}]}' >"$TMP/nulcfg.json"
expect "check-config: a NUL" 2 "a NUL character (\u0000) is not allowed" -- \
    "$BIN" check-config "$TMP/nulcfg.json"
# What a data file is, only when the first line does not start as one:
# a duplicate key or a syntax error in a first record is that.
printf '{"query": "a", "query": "b"}\n' >"$TMP/dup.jsonl"
printf '{"query": "a", "input_token_length": 1,}\n' >"$TMP/comma.jsonl"
for f in dup.jsonl comma.jsonl; do
    expect "eval: a fault in the first record of $f" 2 "$f:1:" -- \
        "$BIN" eval --config "$CFG" --data "$TMP/$f"
    ! grep -qF "expected a JSON array" "$TMP/err" && ok || bad "eval: $f: $(cat "$TMP/err")"
    expect "import: a fault in the first record of $f" 1 "$f:1:" -- \
        "$BIN" import --store "$TMP/nul.db" "$TMP/$f"
    ! grep -qF "expected a JSON array" "$TMP/err" && ok || bad "import: $f: $(cat "$TMP/err")"
done
# A number out of a double's range is a bad field of its record, in JSON
# lines and in an array alike: the record is named and skipped, or with
# --strict refuses the file naming it. jansson refused the whole file
# ("e400.json:2:42: real number overflow near '1e400'"), with --strict or
# not, where a number in range but over the cap is a bad record.
printf '%s\n{"query": "a", "input_token_length": 1e400, "outputs": []}\n' "$good" >"$TMP/e400.jsonl"
printf '[%s,\n{"query": "a", "input_token_length": 1e400, "outputs": []}]\n' "$good" >"$TMP/e400.json"
why="record 1 (line 2): input_token_length: 1e400 is out of range: a number's magnitude is at most about 1.8e308"
for f in e400.jsonl e400.json; do
    rm -f "$TMP"/e400.db*
    expect "import: a number out of range in $f" 0 "imported 1 of 2 records, skipped 1 bad (first: $why)" -- \
        "$BIN" import --store "$TMP/e400.db" "$TMP/$f"
    expect "import --strict: a number out of range in $f" 1 "$f: $why: nothing imported from this file" -- \
        "$BIN" import --store "$TMP/e400.db" --strict "$TMP/$f"
    [ "$(count "$TMP/e400.db")" = "$TMP/e400.db: 1 records" ] && ok || bad "import of $f: $(count "$TMP/e400.db")"
    expect "eval: a number out of range in $f" 0 "skipped 1 bad (first: $why)" -- \
        "$BIN" eval --config "$CFG" --data "$TMP/$f"
done
printf 'query\n' >"$TMP/word.jsonl"
expect "eval: a first line that is no JSON" 2 \
    "word.jsonl:1:5: invalid token near 'query' (expected a JSON array or JSON lines of objects)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/word.jsonl"
# check-config counts columns from 1, as the data loaders do.
: >"$TMP/empty.json"
printf '\xef\x01' >"$TMP/ef.json"
printf '\x01\x02' >"$TMP/bin.json"
for f in empty.json ef.json bin.json; do
    expect "check-config: $f" 2 "$f: line 1, column 1: " -- "$BIN" check-config "$TMP/$f"
done

# --- a data or configuration file in UTF-16 or UTF-32 is named so ---
# (Windows PowerShell's > and Notepad's "Unicode" save UTF-16LE.) It was
# "a NUL byte" or "invalid token" at a place that said nothing of why.
# LABEL FILE WHY WHAT: import of $TMP/FILE fails with WHY and leaves no
# store (else "import of WHAT left a store"); eval of it fails with WHY.
refused_by_import_and_eval() {
    expect "import: $1" 1 "$3: nothing imported from this file" -- \
        "$BIN" import --store "$TMP/enc.db" "$TMP/$2"
    ! ls "$TMP"/enc.db* >/dev/null 2>&1 && ok || bad "import of $4 left a store"
    expect "eval: $1" 2 "$3" -- "$BIN" eval --config "$CFG" --data "$TMP/$2"
}
for enc in UTF-16LE:fffe UTF-16BE:feff UTF-32LE:fffe0000 UTF-32BE:0000feff; do
    name=${enc%%:*}
    printf '%s\n' "$REC" | iconv -t "$name" >"$TMP/body"
    printf '%s' "${enc#*:}" | xxd -r -p >"$TMP/$name.jsonl"
    cat "$TMP/body" >>"$TMP/$name.jsonl"
    why="the file is $name (it starts with that encoding's byte order mark): JSON text is UTF-8, so save it as UTF-8"
    printf '%s' "${enc#*:}" | xxd -r -p >"$TMP/$name.json"
    iconv -t "$name" "$CFG" >>"$TMP/$name.json"
    expect "check-config: a $name file" 2 "$name.json: line 1, column 1: $why" -- \
        "$BIN" check-config "$TMP/$name.json"
    expect "import: a $name file" 1 "$name.jsonl:1:1: $why: nothing imported from this file" -- \
        "$BIN" import --store "$TMP/enc.db" "$TMP/$name.jsonl"
    ! ls "$TMP"/enc.db* >/dev/null 2>&1 && ok || bad "import of a $name file left a store"
    # eval reads its data as a stream (a pipe too), and names the encoding
    # too, UTF-32BE's as well, whose mark starts with a NUL byte (that was
    # "a NUL byte").
    expect "eval: a $name file" 2 "$name.jsonl:1:1: $why" -- \
        "$BIN" eval --config "$CFG" --data "$TMP/$name.jsonl"
    cat "$TMP/$name.jsonl" | "$BIN" eval --config "$CFG" --data - >/dev/null 2>"$TMP/err"
    grep -qF "/dev/stdin:1:1: $why" "$TMP/err" && ok || bad "eval: a $name pipe: $(cat "$TMP/err")"
    # With no mark, the encoding is known from the NUL bytes among the
    # first characters, which are ASCII ("a NUL byte" at 1:1 or 1:2 before):
    # JSON lines, an array, either after a blank line, and a config.
    why="the file is $name without a byte order mark (its first characters are ASCII with NUL bytes between them, as that encoding writes them): JSON text is UTF-8, so save it as UTF-8"
    cp "$TMP/body" "$TMP/n$name.jsonl"
    printf '\n[%s]\n' "$REC" | iconv -t "$name" >"$TMP/n$name.json"
    printf '\n%s\n' "$REC" | iconv -t "$name" >"$TMP/nl$name.jsonl"
    iconv -t "$name" "$CFG" >"$TMP/nc$name.json"
    expect "check-config: a $name file with no mark" 2 "nc$name.json: line 1, column 1: $why" -- \
        "$BIN" check-config "$TMP/nc$name.json"
    for f in "n$name.jsonl" "n$name.json" "nl$name.jsonl"; do
        refused_by_import_and_eval "$f" "$f" "$f:1:1: $why" "$f"
        cat "$TMP/$f" | "$BIN" eval --config "$CFG" --data - >/dev/null 2>"$TMP/err"
        grep -qF "/dev/stdin:1:1: $why" "$TMP/err" && ok || bad "eval: $f from a pipe: $(cat "$TMP/err")"
    done
done
# A file of 2 or 3 bytes is named the same way, by its mark alone or by
# NUL bytes beside an ASCII character as far as the pattern goes: "{\0",
# UTF-16LE's '{', was "a NUL byte" at 1:2. Bytes all NUL show no encoding.
for short in UTF-16LE:fffe: UTF-16BE:feff: UTF-16LE:7b00 UTF-16BE:007b UTF-16LE:7b000a \
    UTF-16BE:005b00 UTF-32LE:5b0000; do
    name=${short%%:*} hex=${short#*:}
    f=short${hex%:}.jsonl
    printf '%s' "${hex%:}" | xxd -r -p >"$TMP/$f"
    case $hex in
    *:) why="the file is $name (it starts with that encoding's byte order mark)" ;;
    *) why="the file is $name without a byte order mark (its few bytes are ASCII with NUL bytes beside them, as that encoding writes ASCII)" ;;
    esac
    why="$why: JSON text is UTF-8, so save it as UTF-8"
    refused_by_import_and_eval "a file of the bytes ${hex%:}" "$f" "$f:1:1: $why" "$f"
    "$BIN" eval --config "$CFG" --data - <"$TMP/$f" >/dev/null 2>"$TMP/err"
    grep -qF "/dev/stdin:1:1: $why" "$TMP/err" && ok || bad "eval: $f from a pipe: $(cat "$TMP/err")"
    expect "check-config: a file of the bytes ${hex%:}" 2 "$f: line 1, column 1: $why" -- \
        "$BIN" check-config "$TMP/$f"
done
printf '\0\0' >"$TMP/nul00.jsonl"
expect "eval: two NUL bytes" 2 "nul00.jsonl:1:1: a NUL byte (JSON text holds none)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/nul00.jsonl"
# A UTF-8 mark at the start of a later line (files joined with cat) is
# named: "invalid token near '...'" quoted the mark, which shows as nothing.
printf '\357\273\277%s\n  \357\273\277%s\n' "$REC" "$REC" >"$TMP/joined.jsonl"
why="joined.jsonl:2:3: a UTF-8 byte order mark, which may start only the file (files joined into one keep each one's): remove it"
refused_by_import_and_eval "a byte order mark on line 2" joined.jsonl "$why" "joined files"
# So is one inside a JSON array, before its first record or a later one,
# and one starting a second array after the first: "invalid token near
# '...'" there too.
printf '[\357\273\277%s]\n' "$REC" >"$TMP/bomarr1.json"
printf '[%s,\n\357\273\277%s]\n' "$REC" "$REC" >"$TMP/bomarr2.json"
printf '[%s]\n\357\273\277[%s]\n' "$REC" "$REC" >"$TMP/bomarr3.json"
for at in bomarr1.json:1:2 bomarr2.json:2:1 bomarr3.json:2:1; do
    f=${at%%:*}
    why="$at: a UTF-8 byte order mark, which may start only the file (files joined into one keep each one's): remove it"
    refused_by_import_and_eval "a byte order mark in $f" "$f" "$why" "$f"
done
# A first byte 0xFF or NUL that starts no such mark, and NUL bytes at the
# start in no such pattern, are refused as before.
printf '\xff\x01{}\n' >"$TMP/ff.jsonl"
printf '\0{}\n' >"$TMP/nul0.jsonl"
printf '{}\0\n' >"$TMP/nul2.jsonl"
expect "eval: a NUL third" 2 "nul2.jsonl:1:3: a NUL byte (JSON text holds none)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/nul2.jsonl"
expect "import: a NUL third" 1 "nul2.jsonl:1:3: a NUL byte (JSON text holds none)" -- \
    "$BIN" import --store "$TMP/enc.db" "$TMP/nul2.jsonl"
expect "eval: a first byte 0xFF" 2 "ff.jsonl:1:1: unable to decode byte 0xff (expected a JSON array or JSON lines of objects)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/ff.jsonl"
expect "eval: a first byte NUL" 2 "nul0.jsonl:1:1: a NUL byte (JSON text holds none)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/nul0.jsonl"

# --- a split that is no string is a bad record, not another split ---
printf '{"query": "q", "split": 5, "outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 3}]}\n{"query": "r", "split": "test", "outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 3}]}\n' \
    >"$TMP/split5.jsonl"
expect "import --strict: split 5" 1 "record 0 (line 1): split: expected a string" -- \
    "$BIN" import --store "$TMP/split.db" --split test --strict "$TMP/split5.jsonl"
expect "import: split 5 is counted bad" 0 "skipped 1 bad (first: record 0 (line 1): split: expected a string)" -- \
    "$BIN" import --store "$TMP/split.db" --split test "$TMP/split5.jsonl"
expect "eval: split 5 is counted bad" 0 "skipped 1 bad (first: record 0 (line 1): split: expected a string)" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/split5.jsonl" --split test
# --- import --split of records with no "split" field ---
# They are in no split: the summary counts them apart from another split's,
# as eval does (it read "(2 in other splits)" of a file that names none),
# and a file that names no splits at all is said so.
R='"outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 3}]'
printf '{"query": "q", %s}\n{"query": "r", "split": null, %s}\n' "$R" "$R" >"$TMP/nosplit.jsonl"
printf '{"query": "q", %s}\n{"query": "r", "split": "train", %s}\n{"query": "s", "split": "test", %s}\n' \
    "$R" "$R" "$R" >"$TMP/somesplit.jsonl"
"$BIN" import --store "$TMP/nosplit.db" --split test "$TMP/nosplit.jsonl" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && grep -qF 'nosplit.jsonl: imported 0 of 2 records (0 in other splits, 2 with no "split" field)' "$TMP/out" &&
    grep -qF 'import: '"$TMP"'/nosplit.jsonl: no record has a "split" field, so --split test dropped all 2' "$TMP/err" &&
    ok || bad "import --split of a file with no split field: exit $rc: $(cat "$TMP/out" "$TMP/err")"
"$BIN" import --store "$TMP/nosplit.db" --split test "$TMP/somesplit.jsonl" >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 0 ] && grep -qF 'somesplit.jsonl: imported 1 of 3 records (1 in other splits, 1 with no "split" field)' "$TMP/out" &&
    ! grep -qF 'no record has' "$TMP/err" &&
    ok || bad "import --split of a file with few split fields: exit $rc: $(cat "$TMP/out" "$TMP/err")"
# --- config: routes null refused as router null is; a model name within the data cap ---
printf '{"models": [{"name": "a", "backend": "mock"}], "routes": null}' >"$TMP/routesnull.json"
expect "check-config: routes null" 2 "routes: expected an array, got null" -- \
    "$BIN" check-config "$TMP/routesnull.json"
long=$(head -c 257 /dev/zero | tr '\0' m)
printf '{"models": [{"name": "%s", "backend": "mock"}]}' "$long" >"$TMP/longname.json"
expect "check-config: a model name over 256 bytes" 2 \
    "models[0].name: 257 bytes, over the cap of 256 bytes for a model name" -- \
    "$BIN" check-config "$TMP/longname.json"
printf '{"models": [{"name": "%s", "backend": "mock"}]}' "${long:1}" >"$TMP/name256.json"
expect "check-config: a model name of 256 bytes" 0 "" -- "$BIN" check-config "$TMP/name256.json"

# --- llmroute help COMMAND is COMMAND --help ---
for c in route import eval check-config serve version; do
    expect "help $c" 0 "usage: llmroute $c" -- "$BIN" help "$c"
done
expect "help of an unknown command" 2 "llmroute help: unknown command 'bogus'" -- "$BIN" help bogus
expect "help with two names" 2 "takes one command name" -- "$BIN" help route eval
# help is a command too: its -h, its --help and "help help" print the usage.
for h in -h --help help; do
    expect "help $h" 0 "usage: llmroute <command> [options]" -- "$BIN" help "$h"
    grep -qF "usage: llmroute <command>" "$TMP/out" && ok || bad "help $h: usage not on stdout"
done

# A warning of serve's or check-config's own quotes a key from the file: one line too.
printf '{"models": [{"name": "a", "backend": "mock"}], "server": {"x\\u001b[2J": 1}}' >"$TMP/esckey.json"
expect "check-config: an unknown server key with an ESC" 0 "" -- "$BIN" check-config "$TMP/esckey.json"
one_line_escaped "check-config: a warning quoting an ESC"
# The library's warnings (an unknown key of a model, the top level, an
# unknown backend), which check-config and serve print, are escaped alike:
# a key or value of the file could clear the terminal or forge a line.
printf '{"models": [{"name": "a", "backend": "mo\\u001b[2Jck", "base_url": "http://127.0.0.1:9/v1", "x\\u001b]0;t\\u0007": 1}], "y\\nllmroute check-config: ok": 2}' \
    >"$TMP/esclib.json"
expect "check-config: library warnings quoting control characters" 0 "" -- \
    "$BIN" check-config "$TMP/esclib.json"
if [ "$(wc -l <"$TMP/err")" = 3 ] && ! grep -q $'[\x1b\x07\r]' "$TMP/err" &&
    grep -qF "models[0].backend: 'mo\x1b[2Jck' is not a known backend" "$TMP/err" &&
    grep -qF 'models[0].x\x1b]0;t\x07: unknown key, ignored' "$TMP/err" &&
    grep -qF 'y\nllmroute check-config: ok: unknown key, ignored' "$TMP/err"; then
    ok
else
    bad "check-config: library warnings escaped: $(cat -A "$TMP/err")"
fi

# import's report on standard output quotes a data file's name and a bad
# record's words (a key of the file): escaped there too, one line a file
# (they were printed raw: a key could clear the terminal).
REC1='{"query": "q", "outputs": [{"model_name": "gpt-4o", "correctness": 1, "output_token_length": 5}]}'
esc_name="$TMP/"$'d\x1b[31m\nx.jsonl'
printf '%s\n%s\n' "$REC1" '{"query": "x", "note\u001b[2J\nX": "a\u0000", "outputs": []}' >"$esc_name"
"$BIN" import --store "$TMP/esc.db" "$esc_name" >"$TMP/report" 2>/dev/null
rc=$?
sed -n 1p "$TMP/report" >"$TMP/err"
[ "$rc" = 0 ] && [ "$(wc -l <"$TMP/report")" = 2 ] &&
    grep -qF 'd\x1b[31m\nx.jsonl: imported 1 of 2' "$TMP/err" && grep -qF 'note\x1b[2J\nX' "$TMP/err" &&
    ok || bad "import report escaped: rc $rc, $(cat -A "$TMP/report")"
one_line_escaped "import's report quoting a key with an ESC"

# A store held open while standard input or output is closed: its file took
# descriptor 0 (or 1) and was read as the queries ("a NUL byte").
expect "import - with standard input closed" 1 "Bad file descriptor" -- \
    sh -c 'exec "$0" import --store "$1" - <&-' "$BIN" "$TMP/esc.db"
expect "route --store with standard input closed" 1 "cannot read standard input: Bad file descriptor" -- \
    sh -c 'exec "$0" route --config "$1" --strategy smart --store "$2" <&-' "$BIN" "$CFG" "$TMP/esc.db"

# An option's value forgotten took the next option for it: a store named
# --strict, exit 0. --NAME=VALUE still takes a value that starts with --.
( bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  cd "$TMP" && "$bin" import --store --strict one.jsonl >out 2>err; echo $? >rc )
[ "$(cat "$TMP/rc")" = 2 ] && grep -qF "option '--store' needs a value, got the option '--strict'" "$TMP/err" &&
    [ ! -e "$TMP/--strict" ] && ok || bad "import --store --strict: rc $(cat "$TMP/rc"), $(cat "$TMP/err")"
expect "route --models --json" 2 "option '--models' needs a value, got the option '--json'" -- \
    "$BIN" route --config "$CFG" --models --json q
expect "route --models=--json: a value, an unknown model" 2 "unknown model '--json'" -- \
    "$BIN" route --config "$CFG" --models=--json q

# A store in memory reported the records imported, exit 0, and kept none.
expect "import --store :memory:" 2 "--store :memory: keeps nothing once the command ends" -- \
    "$BIN" import --store :memory: "$TMP/one.jsonl"

# A batch meets a mean quality (--alpha) and never read --requirement:
# --batch --requirement 1 chose what --requirement 0 did, exit 0.
expect "route --batch --requirement" 2 \
    "--requirement applies to routing one query at a time: a --batch assignment meets a mean quality target, given with --alpha" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/esc.db" --batch --requirement 1 q r
! [ -s "$TMP/out" ] && ok || bad "route --batch --requirement printed $(cat "$TMP/out")"

# -0 is 0, and printed so (it was "budget -0 cannot be met").
expect "route --batch --budget -0" 3 "budget 0 cannot be met" -- \
    "$BIN" route --config "$CFG" --strategy smart --store "$TMP/esc.db" --batch --budget -0 q
! grep -qF -- "budget -0" "$TMP/err" && ok || bad "route --budget -0 printed -0: $(cat "$TMP/err")"

# --- a store path that is a symbolic link to nothing ---
# It was "No such file or directory" of a path that is there (import), or
# "does not exist: create it with llmroute import" (route), which failed so;
# check-config passed a config serve then refused. Each names the link's
# target, and nothing is made through the link.
mkdir -p "$TMP/links"
ln -s "$TMP/links/gone/x.db" "$TMP/links/dir.db"
ln -s "$TMP/links/target.db" "$TMP/links/file.db"
for link in dir file; do
    to=$TMP/links/gone/x.db
    [ $link = file ] && to=$TMP/links/target.db
    want="cannot open history store '$TMP/links/$link.db': it is a symbolic link to '$to', which does not exist"
    expect "import into a link to nothing ($link)" 1 "$want" -- \
        "$BIN" import --store "$TMP/links/$link.db" "$SRC/examples/history.jsonl"
    expect "route on a link to nothing ($link)" 1 "$want" -- \
        "$BIN" route --config "$CFG" --strategy smart --store "$TMP/links/$link.db" q
    sed "s#\"strategy\": \"sequential\", \"performance#\"store\": \"$TMP/links/$link.db\", \"strategy\": \"sequential\", \"performance#" \
        "$CFG" >"$TMP/links/cfg.json"
    grep -qF "$TMP/links/$link.db" "$TMP/links/cfg.json" && ok || bad "the config names no store"
    expect "check-config of a store that is a link to nothing ($link)" 2 "$want" -- \
        "$BIN" check-config "$TMP/links/cfg.json"
    expect "serve on a link to nothing ($link)" 2 "$want" -- \
        "$BIN" serve --config "$TMP/links/cfg.json" --listen 127.0.0.1:0
done
[ "$(ls "$TMP/links")" = "$(printf 'cfg.json\ndir.db\nfile.db')" ] && ok ||
    bad "a link to nothing had a store made through it: $(ls -R "$TMP/links")"

# A configuration or data file that is a symbolic link to nothing (a
# config map swapped under a gateway, a data link left behind) names the
# link's target too, where it said "No such file or directory" of a path
# that is there.
mkdir -p "$TMP/flinks"
ln -s "$TMP/flinks/cfg-v2.json" "$TMP/flinks/cfg.json"
ln -s "$TMP/flinks/data-v2.jsonl" "$TMP/flinks/data.jsonl"
want="$TMP/flinks/cfg.json: it is a symbolic link to '$TMP/flinks/cfg-v2.json', which does not exist"
expect "check-config of a link to nothing" 2 "$want" -- "$BIN" check-config "$TMP/flinks/cfg.json"
expect "route with a config that is a link to nothing" 2 "$want" -- \
    "$BIN" route --config "$TMP/flinks/cfg.json" q
expect "serve with a config that is a link to nothing" 2 "$want" -- \
    "$BIN" serve --config "$TMP/flinks/cfg.json" --listen 127.0.0.1:0
want="cannot read '$TMP/flinks/data.jsonl': it is a symbolic link to '$TMP/flinks/data-v2.jsonl', which does not exist"
expect "import of a data file that is a link to nothing" 1 "$want" -- \
    "$BIN" import --store "$TMP/flinks/h.db" "$TMP/flinks/data.jsonl"
expect "eval of a data file that is a link to nothing" 2 "$want" -- \
    "$BIN" eval --config "$CFG" --data "$TMP/flinks/data.jsonl"
[ "$(ls "$TMP/flinks")" = "$(printf 'cfg.json\ndata.jsonl')" ] && ok ||
    bad "a link to nothing had a file made through it: $(ls "$TMP/flinks")"

# --- a file all of whose records are bad ---
# It was "imported 0 of 2 records, skipped 2 bad", exit 0, with an empty
# store made: a file in another format passed for one with nothing in it.
mkdir -p "$TMP/allbad"
printf '{"prompt": "q", "answers": {"gpt-4o": 1}}\n{"prompt": "r", "answers": {"gpt-4o": 0}}\n' \
    >"$TMP/allbad/other.jsonl"
printf '{"query": "q", "outputs": []}\n' >"$TMP/allbad/one.jsonl"
expect "import of a file whose records are all bad" 1 \
    "other.jsonl: nothing imported: its 2 records are all bad" -- \
    "$BIN" import --store "$TMP/allbad/new.db" "$TMP/allbad/other.jsonl"
grep -qF "imported 0 of 2 records, skipped 2 bad (first: record 0 (line 1): query: " "$TMP/out" && ok ||
    bad "the report line is gone: $(cat "$TMP/out")"
grep -qF "removed '$TMP/allbad/new.db', which this command created" "$TMP/err" && ok ||
    bad "the store made is not said removed: $(cat "$TMP/err")"
[ ! -e "$TMP/allbad/new.db" ] && ok || bad "an empty store was left at new.db"
expect "import of a file whose one record is bad" 1 \
    "one.jsonl: nothing imported: its one record is bad" -- \
    "$BIN" import --store "$TMP/allbad/new.db" "$TMP/allbad/one.jsonl"
"$BIN" import --store "$TMP/allbad/old.db" "$SRC/examples/history.jsonl" >/dev/null 2>&1
before=$(count "$TMP/allbad/old.db")
expect "import of an all-bad file into a store" 1 "nothing imported: its 2 records are all bad" -- \
    "$BIN" import --store "$TMP/allbad/old.db" "$TMP/allbad/other.jsonl"
[ -n "$before" ] && [ "$(count "$TMP/allbad/old.db")" = "$before" ] && ok ||
    bad "the store changed: $before, then $(count "$TMP/allbad/old.db")"
# With good files beside it, they are imported and the command still fails.
expect "import of a good file and an all-bad one" 1 "nothing imported: its one record is bad" -- \
    "$BIN" import --store "$TMP/allbad/mixed.db" "$SRC/examples/history.jsonl" "$TMP/allbad/one.jsonl"
grep -qF "kept '$TMP/allbad/mixed.db', which this command created: it holds the 64 records" "$TMP/err" && ok ||
    bad "the good file's records are not said kept: $(cat "$TMP/err")"
# Under --split: bad records and none of the split is a failure; bad
# records beside good ones of the split are not.
R='"outputs": [{"model_name": "gpt-4o", "correctness": true, "output_token_length": 3}]'
printf '{"query": "q", "split": 5, %s}\n{"query": "r", "split": "train", %s}\n' "$R" "$R" \
    >"$TMP/allbad/split.jsonl"
expect "import --split of bad records and none of the split" 1 \
    "split.jsonl: nothing imported: 1 bad record and none of split 'test'" -- \
    "$BIN" import --store "$TMP/allbad/split.db" --split test "$TMP/allbad/split.jsonl"
expect "import --split of bad records and one of the split" 0 \
    "imported 1 of 2 records (0 in other splits), skipped 1 bad" -- \
    "$BIN" import --store "$TMP/allbad/split.db" --split train "$TMP/allbad/split.jsonl"
expect "import --help says a file of bad records alone fails" 0 \
    "(a file whose records are all bad fails either way)" -- "$BIN" import --help

summary
