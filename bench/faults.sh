#!/usr/bin/env bash
# bench/faults.sh -- llmroute serve under upstream faults, against itself on
# healthy upstreams, in one run. A route over three fake upstreams takes
# streamed chat completions from wrk: first all three healthy (the anchor),
# then one failing 30% of its requests (fail_pct=30, 500s) and one stalling
# 5% of its streams after the first event (stall_pct=5). Everything binds
# 127.0.0.1; every process started here is killed on exit.
#
#   bench/faults.sh BUILD_DIR
#
# Prints for both runs: throughput, p50/p99 latency, client-visible failures
# (a non-200 answer, or a stream without [DONE] or with an error event; the
# target is 0 while a healthy fallback exists), and upstream attempts per
# request from /metrics; then the added p99 latency and the attempts by
# failure class. Environment: FAKE_UPSTREAM (path), BENCH_SECONDS (default
# 30), BENCH_CONNS (default 32), FAULTS_IDLE_MS (the stall detector,
# timeouts.idle_ms; default 250).
set -euo pipefail
. "$(dirname "$0")/common.bash"
bench_setup faults "${1:-build}" wrk python3 curl
SECS=${BENCH_SECONDS:-30}
CONNS=${BENCH_CONNS:-32}
IDLE_MS=${FAULTS_IDLE_MS:-250}
LUA=$SRC/bench/faults/stream.lua

ms() { python3 -c "print('%.3f' % ($1 / 1000))"; }  # microseconds -> ms

# ---- three upstreams ----
declare -A UP
for u in u1 u2 u3; do
    "$FAKE" --listen 127.0.0.1:0 --port-file "$TMP/$u.port" --name "$u" 2>"$TMP/$u.err" &
    PIDS+=($!)
    UP[$u]=$(wait_port_file "$TMP/$u.port") || { cat "$TMP/$u.err"; exit 1; }
done
scenario() { # UPSTREAM SPEC
    curl -s --max-time 5 "http://127.0.0.1:${UP[$1]}/_control" \
        -d "{\"scenario\": \"$2\", \"reset\": true}" | grep -q '"ok":true' ||
        { echo "faults bench: could not set $1 to $2"; exit 1; }
}

# ---- one gateway per run, so breakers and metrics start fresh ----
start_gateway() { # NAME -> sets GW_PORT, GW_PID
    cat >"$TMP/$1.json" <<EOF
{"models": [
   {"name": "m1", "backend": "openai", "base_url": "http://127.0.0.1:${UP[u1]}/v1"},
   {"name": "m2", "backend": "openai", "base_url": "http://127.0.0.1:${UP[u2]}/v1"},
   {"name": "m3", "backend": "openai", "base_url": "http://127.0.0.1:${UP[u3]}/v1"}],
 "routes": [{"name": "auto", "strategy": "sequential", "models": ["m1", "m2", "m3"]}],
 "server": {"listen": "127.0.0.1:0",
            "resilience": {"timeouts": {"first_byte_ms": 2000, "idle_ms": $IDLE_MS}}}}
EOF
    "$LLMROUTE" serve --config "$TMP/$1.json" --port-file "$TMP/$1.port" 2>/dev/null &
    GW_PID=$!
    PIDS+=($GW_PID)
    GW_PORT=$(wait_port_file "$TMP/$1.port") || { echo "llmroute did not start"; exit 1; }
}

metric() { # NAME-PREFIX -> the sum of matching series
    curl -s "http://127.0.0.1:$GW_PORT/metrics" |
        awk -v k="$1" 'index($0, k) == 1 { s += $NF } END { printf "%d\n", s }'
}

# run NAME -> "requests seconds p50 p90 p99 p999 max socket_errors failures"
run() {
    wrk -t1 -c"$CONNS" -d"$SECS"s --timeout 10s -s "$LUA" \
        "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$TMP/wrk.$1.out" 2>&1 || true
    # No RESULT line (wrk failed): report one failure rather than nothing.
    local line
    line=$(grep '^RESULT' "$TMP/wrk.$1.out" | tail -1 | cut -d' ' -f2-)
    echo "${line:-0 1 0 0 0 0 0 1 1}"
}

echo "faults bench: wrk -t1 -c$CONNS, ${SECS}s per run, streamed chat (3 content chunks),"
echo "route 'auto' (sequential) over 3 fake upstreams, timeouts.idle_ms=$IDLE_MS, loopback, $(nproc) cores shared"
echo
printf '%-8s %-34s %9s %9s %9s %10s %12s\n' run upstreams req/s p50_ms p99_ms failures attempts/req
declare -A P99
for r in healthy faulty; do
    if [ $r = healthy ]; then
        scenario u1 ok; scenario u2 ok; scenario u3 ok
        desc="ok, ok, ok"
    else
        scenario u1 ok; scenario u2 "fail_pct=30;seed=7"; scenario u3 "stall_pct=5;seed=7"
        desc="ok, fail_pct=30, stall_pct=5"
    fi
    start_gateway $r
    # Correctness first: the route answers a complete stream.
    curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/v1/chat/completions" -H 'Content-Type: application/json' \
        -d '{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}' |
        grep -q 'data: \[DONE\]' || { echo "faults bench: the gateway does not answer"; exit 1; }
    a0=$(metric llmroute_request_attempts_sum); n0=$(metric llmroute_request_attempts_count)
    read -r n s p50 p90 p99 p999 max serr fail <<<"$(run $r)"
    a1=$(metric llmroute_request_attempts_sum); n1=$(metric llmroute_request_attempts_count)
    P99[$r]=$p99
    printf '%-8s %-34s %9s %9.3f %9.3f %10s %12s\n' "$r" "$desc" "$(python3 -c "print(round($n/$s))")" \
        "$(ms $p50)" "$(ms $p99)" "$((fail + serr))/$n" \
        "$(python3 -c "print('%.3f' % (($a1 - $a0) / max(1, $n1 - $n0)))")"
    if [ $r = faulty ]; then
        echo
        echo "upstream attempts by model and outcome (faulty run):"
        curl -s "http://127.0.0.1:$GW_PORT/metrics" |
            awk '/^llmroute_upstream_attempts_total/ && $NF > 0 { printf "  %s %d\n", $1, $NF }'
        curl -s "http://127.0.0.1:$GW_PORT/metrics" |
            awk '/^llmroute_breaker_opens_total/ { printf "  %s %d\n", $1, $NF }'
        FAULTY_FAILURES=$((fail + serr))
    fi
    kill "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
done
echo
echo "added p99 latency under faults: +$(ms $((P99[faulty] - P99[healthy]))) ms" \
     "(a stalled stream waits timeouts.idle_ms = $IDLE_MS ms before failing over)"
echo "client-visible failures under faults: $FAULTY_FAILURES (target 0: a healthy fallback exists)"
[ "$FAULTY_FAILURES" -eq 0 ]
