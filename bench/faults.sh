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
# Runs BENCH_FAULT_ROUNDS rounds, each a healthy run then a faulty one, with a
# fresh gateway per run (breakers and metrics start fresh). Prints for every
# run: throughput, p50/p99 latency, client-visible failures (a non-200
# answer, or a stream without [DONE] or with an error event; the target is 0
# while a healthy fallback exists), and upstream attempts per request from
# /metrics; then per scenario the medians over rounds, the medians of the
# per-round comparisons (faulty/healthy throughput, added p99), the total
# client-visible failures over all rounds, the faulty runs' attempts by model
# and failure class and their breaker openings, and how busy the rest of the
# machine was meanwhile. Exits 1 if any run had a client-visible failure.
#
# Environment: FAKE_UPSTREAM (path), BENCH_SECONDS (default 20 per run: the
# default 3 rounds x 2 runs take about 2 minutes 10 s), BENCH_FAULT_ROUNDS
# (default 3), BENCH_CONNS (default 32), FAULTS_IDLE_MS (the stall detector,
# timeouts.idle_ms; default 250).
set -euo pipefail
. "$(dirname "$0")/common.bash"
bench_setup faults "${1:-build}" wrk python3 curl
SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_FAULT_ROUNDS:-3}
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

echo "faults bench: wrk -t1 -c$CONNS, ${SECS}s per run, $ROUNDS rounds of a healthy then a faulty run"
echo "(fresh gateway per run), streamed chat (3 content chunks), route 'auto' (sequential) over"
echo "3 fake upstreams, timeouts.idle_ms=$IDLE_MS, loopback, $(nproc) cores shared; medians over rounds"
echo
printf '%-6s %-8s %-30s %9s %9s %9s %12s %12s\n' round run upstreams req/s p50_ms p99_ms failures attempts/req
: >"$TMP/faulty.attempts"
: >"$TMP/faulty.breakers"
cpu_mark all0
for round in $(seq "$ROUNDS"); do
    for r in healthy faulty; do
        if [ $r = healthy ]; then
            scenario u1 ok; scenario u2 ok; scenario u3 ok
            desc="ok, ok, ok"
        else
            scenario u1 ok; scenario u2 "fail_pct=30;seed=7"; scenario u3 "stall_pct=5;seed=7"
            desc="ok, fail_pct=30, stall_pct=5"
        fi
        start_gateway "$r$round"
        # Correctness first: the route answers a complete stream.
        curl -s --max-time 5 "http://127.0.0.1:$GW_PORT/v1/chat/completions" -H 'Content-Type: application/json' \
            -d '{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}' |
            grep -q 'data: \[DONE\]' || { echo "faults bench: the gateway does not answer"; exit 1; }
        a0=$(metric llmroute_request_attempts_sum); n0=$(metric llmroute_request_attempts_count)
        read -r n s p50 p90 p99 p999 max serr fail <<<"$(run "$r$round")"
        a1=$(metric llmroute_request_attempts_sum); n1=$(metric llmroute_request_attempts_count)
        apr=$(python3 -c "print('%.3f' % (($a1 - $a0) / max(1, $n1 - $n0)))")
        echo "$n $s $p50 $p99 $((fail + serr)) $apr" >>"$TMP/$r.runs"
        printf '%-6s %-8s %-30s %9s %9.3f %9.3f %12s %12s\n' "$round" "$r" "$desc" \
            "$(python3 -c "print(round($n/$s))")" "$(ms $p50)" "$(ms $p99)" "$((fail + serr))/$n" "$apr"
        if [ $r = faulty ]; then
            curl -s "http://127.0.0.1:$GW_PORT/metrics" |
                awk '/^llmroute_upstream_attempts_total/ && $NF > 0 { printf "%s %d\n", $1, $NF }' \
                    >>"$TMP/faulty.attempts"
            curl -s "http://127.0.0.1:$GW_PORT/metrics" |
                awk -v r="$round" '/^llmroute_breaker_opens_total/ { printf "%s %s %d\n", $1, r, $NF }' \
                    >>"$TMP/faulty.breakers"
        fi
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    done
done
cpu_mark all1
echo
python3 - "$TMP" "$IDLE_MS" <<'PY'
import collections, statistics, sys
tmp, idle_ms = sys.argv[1], sys.argv[2]
med = statistics.median
runs = {r: [list(map(float, l.split())) for l in open("%s/%s.runs" % (tmp, r))]
        for r in ("healthy", "faulty")}
rps = {r: [x[0] / x[1] for x in runs[r]] for r in runs}
print("medians over %d rounds (failures: the sum):" % len(runs["healthy"]))
print("%-6s %-8s %-30s %9s %9s %9s %12s %12s" % ("", "run", "upstreams", "req/s", "p50_ms", "p99_ms",
                                                "failures", "attempts/req"))
desc = {"healthy": "ok, ok, ok", "faulty": "ok, fail_pct=30, stall_pct=5"}
for r in runs:
    x = runs[r]
    print("%-6s %-8s %-30s %9.0f %9.3f %9.3f %12s %12.3f" % (
        "median", r, desc[r], med(rps[r]), med([v[2] for v in x]) / 1000,
        med([v[3] for v in x]) / 1000, "%d/%d" % (sum(v[4] for v in x), sum(v[0] for v in x)),
        med([v[5] for v in x])))
h, f = runs["healthy"], runs["faulty"]
ratios = [a / b if b > 0 else float("nan") for a, b in zip(rps["faulty"], rps["healthy"])]
added = [(a[3] - b[3]) / 1000 for a, b in zip(f, h)]
print("faulty / healthy throughput, median of the per-round ratios: %.2f (rounds: %s)"
      % (med(ratios), ", ".join("%.2f" % v for v in ratios)))
print("added p99 latency under faults, median of the per-round differences: %+.3f ms (rounds: %s;"
      " a stalled stream waits timeouts.idle_ms = %s ms before failing over)"
      % (med(added), ", ".join("%+.1f" % v for v in added), idle_ms))
print("client-visible failures over all %d rounds: %d in %d faulty-run requests, %d in %d healthy-run"
      " requests (target 0: a healthy fallback exists)"
      % (len(f), sum(v[4] for v in f), sum(v[0] for v in f), sum(v[4] for v in h), sum(v[0] for v in h)))
att = collections.OrderedDict()
for l in open("%s/faulty.attempts" % tmp):
    k, v = l.split()
    att[k] = att.get(k, 0) + int(v)
print()
print("upstream attempts by model and outcome, summed over the %d faulty runs:" % len(f))
for k, v in att.items():
    print("  %s %d" % (k, v))
br = collections.OrderedDict()
for l in open("%s/faulty.breakers" % tmp):
    k, _, v = l.split()
    br.setdefault(k, []).append(v)
print("breaker openings in each faulty run (rounds 1..%d):" % len(f))
for k, v in br.items():
    print("  %s %s" % (k, ", ".join(v)))
PY
cpu_report all0 all1 "the runs"
FAILURES=$(awk '{ s += $5 } END { print s + 0 }' "$TMP/healthy.runs" "$TMP/faulty.runs")
[ "$FAILURES" -eq 0 ]
