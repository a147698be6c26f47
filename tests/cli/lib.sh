# lib.sh -- what the CLI end-to-end scripts share. Source it after setting
# BIN (the llmroute command) and TMP (a scratch folder).
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect NAME WANT_RC WANT_OUTPUT_SUBSTRING -- CMD...
# Runs CMD with no input; passes when it exits WANT_RC and, if given, the
# substring is in its standard error or output.
expect() {
    local name=$1 want_rc=$2 want_err=$3
    shift 4
    "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    if [ "$rc" != "$want_rc" ]; then
        bad "$name: exit $rc, wanted $want_rc; stderr: $(cat "$TMP/err")"
    elif [ -n "$want_err" ] && ! grep -qF -- "$want_err" "$TMP/err" "$TMP/out"; then
        bad "$name: output lacks '$want_err': $(cat "$TMP/err" "$TMP/out")"
    else
        ok
    fi
}

# The last line of `llmroute import --store FILE`: "FILE: N records".
count() { "$BIN" import --store "$1" 2>/dev/null | tail -1; }

# The closing line, and the script's status.
summary() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
