#!/usr/bin/env bash
# bench/gateway.sh -- llmroute serve against two anchors, on one upstream, in
# one run: wrk straight to the fake upstream ("direct"), through llmroute, and
# through the Portkey AI gateway (npm @portkey-ai/gateway). Everything binds
# 127.0.0.1; every process started here is killed on exit.
#
#   bench/gateway.sh BUILD_DIR
#
# Prints, for each target, throughput and p50/p99 latency at fixed concurrency
# (wrk, saturation), in rounds with the targets interleaved in each round
# (direct, llmroute, Portkey, then the next round): each run's figures, the
# medians over rounds, and the median of the per-round throughput ratios
# llmroute/direct and llmroute/Portkey; then direct vs llmroute at a FIXED
# RATE (bench/loadgen, an open-loop generator: latency from each request's
# scheduled send time, so a stall counts for every request it delays),
# several rounds alternating the targets, medians over rounds, llmroute's
# overhead over direct, and the gateway's own measure of its share of the
# time for that section's requests (its /metrics histogram read before and
# after the section); then llmroute's RSS as requests accumulate to 1,000,000.
# Each timed section says how busy the rest of the machine was meanwhile.
#
# The fixed-rate section also runs a second llmroute forced onto libcurl for
# its upstream leg (LLMROUTE_UPSTREAM_CLIENT=curl), the gateway's previous
# upstream client, so the two are compared in the same run.
#
# Environment: FAKE_UPSTREAM (path), BENCH_SECONDS (default 10 per saturation
# run, and per wrk run of the RSS section), BENCH_CONNS (default 32),
# BENCH_SAT_ROUNDS (saturation rounds, default 3), BENCH_TOTAL (default
# 1000000), BENCH_SKIP_PORTKEY=1,
# BENCH_RATE (default 5000), BENCH_RATE_CONNS (default 32), BENCH_ROUNDS
# (default 5), BENCH_RATE_SECONDS (default 10 per target per round),
# BENCH_SKIP_CURL=1, BENCH_PIN=1 (gateways on CPU 1; upstream and load
# generators on CPU 0: each side gets a core instead of the scheduler's mix).
#
# Needs wrk, python3, taskset and curl. Portkey also needs node, npm (to
# install it into BUILD_DIR/bench-npm once) and ss: when one is missing, or
# the install or Portkey's start fails, the script says so and runs without
# the Portkey row (as with BENCH_SKIP_PORTKEY=1). With the defaults the
# saturation section takes 3 rounds x 3 targets x (2 + 10) s, about 2 minutes.
set -euo pipefail
. "$(dirname "$0")/common.bash"
bench_setup gateway "${1:-build}" wrk python3 taskset curl
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-32}
TOTAL=${BENCH_TOTAL:-1000000}
LUA=$SRC/bench/gateway/post.lua
LOADGEN=$BUILD/bench/loadgen
[ -x "$LOADGEN" ] || { echo "gateway bench: $LOADGEN not built"; exit 1; }
RATE=${BENCH_RATE:-5000}
RATE_CONNS=${BENCH_RATE_CONNS:-32}
ROUNDS=${BENCH_ROUNDS:-5}
SAT_ROUNDS=${BENCH_SAT_ROUNDS:-3}
RATE_SECS=${BENCH_RATE_SECONDS:-10}
# Pinning: the gateways on one core, the upstream and the load generators on the other.
PIN_GW="" PIN_LOAD=""
if [ "${BENCH_PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    PIN_GW="taskset -c 1" PIN_LOAD="taskset -c 0"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 300); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; return 1; }
ms() { python3 -c "print('%.3f' % ($1 / 1000))"; }  # microseconds -> ms
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/$1/status; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' /proc/$1/status; }
# ---- the upstream ----
$PIN_LOAD "$FAKE" --listen 127.0.0.1:0 --port-file "$TMP/fake.port" 2>"$TMP/fake.err" &
PIDS+=($!)
FAKE_PORT=$(wait_port_file "$TMP/fake.port") || { cat "$TMP/fake.err"; exit 1; }

# ---- llmroute ----
cat >"$TMP/llmroute.json" <<EOF
{"models": [{"name": "fake", "backend": "openai", "base_url": "http://127.0.0.1:$FAKE_PORT/v1",
             "cost_per_input_token": 1e-7, "cost_per_output_token": 2e-7}],
 "routes": [{"name": "auto", "strategy": "sequential", "models": ["fake"]}],
 "server": {"listen": "127.0.0.1:0"}}
EOF
# Request logging stays on (one JSON line per request), written to /dev/null.
$PIN_GW "$LLMROUTE" serve --config "$TMP/llmroute.json" --port-file "$TMP/gw.port" 2>/dev/null &
GW_PID=$!
PIDS+=($GW_PID)
GW_PORT=$(wait_port_file "$TMP/gw.port") || { echo "llmroute did not start"; exit 1; }
CURL_PORT=""
if [ "${BENCH_SKIP_CURL:-0}" != 1 ]; then
    LLMROUTE_UPSTREAM_CLIENT=curl $PIN_GW "$LLMROUTE" serve --config "$TMP/llmroute.json" \
        --port-file "$TMP/gwcurl.port" 2>/dev/null &
    PIDS+=($!)
    CURL_PORT=$(wait_port_file "$TMP/gwcurl.port") || { echo "llmroute (curl) did not start"; exit 1; }
fi

# ---- Portkey ----
PK_PORT=""
PK_RUN=1
if [ "${BENCH_SKIP_PORTKEY:-0}" = 1 ]; then
    PK_RUN=0
else
    for tool in node npm ss; do
        if ! command -v "$tool" >/dev/null; then
            echo "gateway bench: $tool is missing: skipping Portkey (no Portkey row, no ratio to it)"
            PK_RUN=0
            break
        fi
    done
fi
NPM=$BUILD/bench-npm
if [ "$PK_RUN" = 1 ] && [ ! -f "$NPM/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
    echo "installing @portkey-ai/gateway into $NPM ..."
    mkdir -p "$NPM"
    # Its streaming needs the versions from its own lockfile.
    if ! npm install --prefix "$NPM" --no-audit --no-fund --no-save \
        @portkey-ai/gateway@1.15.2 @hono/node-server@1.13.5 hono@4.9.7 >"$TMP/npm.log" 2>&1; then
        tail -20 "$TMP/npm.log"
        echo "gateway bench: npm could not install Portkey: skipping it (no Portkey row, no ratio to it)"
        PK_RUN=0
    fi
fi
if [ "$PK_RUN" = 1 ]; then
    PK_PORT=$(free_port)
    (cd "$NPM" && exec $PIN_GW node --import "$SRC/bench/gateway/bind-local.mjs" \
        node_modules/@portkey-ai/gateway/build/start-server.js --port="$PK_PORT") \
        >"$TMP/portkey.log" 2>&1 &
    PK_PID=$!
    PIDS+=($PK_PID)
    if ! wait_http "http://127.0.0.1:$PK_PORT/"; then
        tail -20 "$TMP/portkey.log"
        echo "gateway bench: Portkey did not start: skipping it (no Portkey row, no ratio to it)"
        kill "$PK_PID" 2>/dev/null || true
        PK_PORT=""
    elif ss -ltnH "sport = :$PK_PORT" | awk '{print $4}' | grep -qv '^127\.0\.0\.1:'; then
        echo "gateway bench: Portkey is listening beyond 127.0.0.1"; ss -ltnp "sport = :$PK_PORT"; exit 1
    fi
fi
PK_HEADERS="x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$FAKE_PORT/v1|Authorization: Bearer x"

# run NAME URL MODEL HEADERS CONNS SECONDS DELAY_MS -> "requests seconds p50 p90 p99 p999 max errors"
run() {
    WRK_MODEL=$3 WRK_HEADERS=$4 WRK_DELAY_MS=$7 $PIN_LOAD wrk -t1 -c"$5" -d"$6"s -s "$LUA" "$2" \
        >"$TMP/wrk.$1.out" 2>&1 || true
    # No RESULT line (wrk failed): report one error rather than nothing.
    local line
    line=$(grep '^RESULT' "$TMP/wrk.$1.out" | tail -1 | cut -d' ' -f2-)
    echo "${line:-0 1 0 0 0 0 0 1}"
}
DIRECT_URL=http://127.0.0.1:$FAKE_PORT/v1/chat/completions
GW_URL=http://127.0.0.1:$GW_PORT/v1/chat/completions
PK_URL=http://127.0.0.1:${PK_PORT:-0}/v1/chat/completions

# Correctness first: each target answers the request wrk will send.
for url in "$DIRECT_URL" "$GW_URL"; do
    curl -s --max-time 5 "$url" -H 'Content-Type: application/json' \
        -d '{"model":"auto","messages":[{"role":"user","content":"hi"}]}' | grep -q chat.completion ||
        { echo "gateway bench: $url does not answer"; exit 1; }
done

echo "gateway bench: wrk -t1, 1 upstream (fake_upstream), loopback, $(nproc) cores shared by all"
echo
SAT_TARGETS="direct llmroute"
[ -n "$PK_PORT" ] && SAT_TARGETS="$SAT_TARGETS portkey"
echo "-- saturation: $CONNS connections, ${SECS}s per run after a 2s warm-up, $SAT_ROUNDS rounds," \
     "targets interleaved in each round ($SAT_TARGETS); medians over rounds --"
printf '%-6s %-10s %12s %10s %10s %10s %8s\n' round target req/s p50_ms p99_ms max_ms errors
cpu_mark sat0
for round in $(seq "$SAT_ROUNDS"); do
    for t in $SAT_TARGETS; do
        case $t in
        direct) url=$DIRECT_URL; model=fake; hdr="" ;;
        llmroute) url=$GW_URL; model=auto; hdr="" ;;
        portkey) url=$PK_URL; model=fake; hdr=$PK_HEADERS ;;
        esac
        run "$t-warm" "$url" "$model" "$hdr" "$CONNS" 2 0 >/dev/null
        read -r n s p50 p90 p99 p999 max err <<<"$(run "$t" "$url" "$model" "$hdr" "$CONNS" "$SECS" 0)"
        echo "$n $s $p50 $p90 $p99 $p999 $max $err" >>"$TMP/sat.$t"
        printf '%-6s %-10s %12s %10.3f %10.3f %10.3f %8s\n' "$round" "$t" \
            "$(python3 -c "print(round($n/$s))")" "$(ms $p50)" "$(ms $p99)" "$(ms $max)" "$err"
        # Errors: wrk's own lines say which (answers not 2xx/3xx, socket errors).
        [ "$err" = 0 ] || grep -E 'Non-2xx|Socket errors' "$TMP/wrk.$t.out" | sed 's/^ */         wrk: /' || true
    done
done
cpu_mark sat1
python3 - "$TMP" $SAT_TARGETS <<'PY'
import statistics, sys
tmp, targets = sys.argv[1], sys.argv[2:]
rows = {t: [list(map(float, l.split())) for l in open("%s/sat.%s" % (tmp, t))] for t in targets}
med = statistics.median
rps = {t: [x[0] / x[1] for x in rows[t]] for t in targets}
print("medians over %d rounds (errors: the sum):" % len(rows["direct"]))
print("%-6s %-10s %12s %10s %10s %10s %8s" % ("", "target", "req/s", "p50_ms", "p99_ms", "max_ms",
                                             "errors"))  # errors: the sum over rounds
for t in targets:
    r = rows[t]
    print("%-6s %-10s %12.0f %10.3f %10.3f %10.3f %8d" % (
        "median", t, med(rps[t]), med([x[2] for x in r]) / 1000, med([x[4] for x in r]) / 1000,
        med([x[6] for x in r]) / 1000, sum(int(x[7]) for x in r)))
def ratio(a, b, fmt, target=""):
    rs = [x / y if y > 0 else float("nan") for x, y in zip(rps[a], rps[b])]
    print("%s / %s throughput, median of the per-round ratios: %s (rounds: %s)%s"
          % (a, b, fmt % med(rs), ", ".join(fmt % x for x in rs), target))
ratio("llmroute", "direct", "%.2f")
if "portkey" in targets:
    ratio("llmroute", "portkey", "%.1fx", "; target >= 5x")
PY
cpu_report sat0 sat1 "this section"

echo
echo "-- fixed rate: $RATE req/s over $RATE_CONNS connections (bench/loadgen, open loop)," \
     "$ROUNDS rounds x ${RATE_SECS}s per target, 1s warm-up each; medians over rounds --"
[ -n "$PIN_GW" ] && echo "   pinned: gateways on CPU 1, fake upstream and loadgen on CPU 0"
BODY='{"model":"MODEL","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France?"}],"temperature":0.2,"max_tokens":16}'
TARGETS="direct llmroute"
[ -n "$CURL_PORT" ] && TARGETS="$TARGETS llmroute-curl"
# rate_run TARGET ROUND -> appends "round sched done errors rps p50 p90 p99 p999 max" to $TMP/rate.TARGET
rate_run() {
    local url model
    case $1 in
    direct) url=$DIRECT_URL; model=fake ;;
    llmroute) url=$GW_URL; model=auto ;;
    llmroute-curl) url=http://127.0.0.1:$CURL_PORT/v1/chat/completions; model=auto ;;
    esac
    local r
    r=$($PIN_LOAD "$LOADGEN" --url "$url" --rate "$RATE" --conns "$RATE_CONNS" \
        --seconds "$RATE_SECS" --warmup 1 --body "${BODY/MODEL/$model}" | grep '^RESULT' | cut -d' ' -f2-)
    echo "$2 ${r:-0 0 0 0 0 0 0 0 0}" >>"$TMP/rate.$1"
}
# The gateway's own histogram is cumulative: read it before and after the section.
curl -s "http://127.0.0.1:$GW_PORT/metrics" >"$TMP/metrics.rate0"
cpu_mark rate0
for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do rate_run "$t" "$round"; done
done
cpu_mark rate1
curl -s "http://127.0.0.1:$GW_PORT/metrics" >"$TMP/metrics.rate1"
python3 - "$TMP" "$RATE" $TARGETS <<'PY'
import statistics, sys
tmp, rate, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows = {}
for t in targets:
    rows[t] = [list(map(float, l.split())) for l in open("%s/rate.%s" % (tmp, t))]
med = lambda xs: statistics.median(xs)
ms = lambda us: us / 1000.0
print("%-14s %9s %9s %9s %9s %10s %8s" % ("target", "req/s", "p50_ms", "p90_ms", "p99_ms",
                                         "p99.9_ms", "errors"))
for t in targets:
    r = rows[t]
    print("%-14s %9.0f %9.3f %9.3f %9.3f %10.3f %8d" % (
        t, med([x[4] for x in r]), ms(med([x[5] for x in r])), ms(med([x[6] for x in r])),
        ms(med([x[7] for x in r])), ms(med([x[8] for x in r])), sum(int(x[3]) for x in r)))
print("per round, p99 ms:" + "".join("  %s %s" % (t, " ".join("%.2f" % ms(x[7]) for x in rows[t]))
                                     for t in targets))
d = rows["direct"]
for t in targets[1:]:
    g = rows[t]
    o50 = med([ms(a[5] - b[5]) for a, b in zip(g, d)])
    o99 = med([ms(a[7] - b[7]) for a, b in zip(g, d)])
    o999 = med([ms(a[8] - b[8]) for a, b in zip(g, d)])
    verdict = "met" if o99 < 1.0 and med([a[4] for a in g]) >= 0.98 * rate else "NOT met"
    print("%s overhead over direct (median of per-round differences): p50 %+.3f ms, "
          "p99 %+.3f ms, p99.9 %+.3f ms; target p99 < 1 ms at %.0f req/s: %s"
          % (t, o50, o99, o999, rate, verdict))
PY
cpu_report rate0 rate1 "this section"
# The gateway's own view: request time not spent waiting on the upstream, for
# llmroute's requests of this section only (the difference of the two reads).
python3 - "$TMP/metrics.rate0" "$TMP/metrics.rate1" <<'PY'
import sys
def buckets(path):
    b = {}
    for l in open(path):
        if l.startswith("llmroute_gateway_overhead_seconds_bucket"):
            le = l.split("le=\"")[1].split("\"")[0]
            b[le] = float(l.rsplit(" ", 1)[1])
    return b
b0, b1 = buckets(sys.argv[1]), buckets(sys.argv[2])
b = {le: b1[le] - b0.get(le, 0) for le in b1}
n = b.get("+Inf", 0)
print("  gateway-measured overhead (llmroute's /metrics histogram, read before and after this section:"
      " its requests here only, the 1s warm-ups included):")
for le in ("0.0001", "0.00025", "0.0005", "0.001"):
    print("  <= %6.3f ms: %.3f%% of %d requests" % (float(le) * 1000, 100 * b[le] / max(n, 1), n))
PY

echo
echo "-- llmroute RSS while serving $TOTAL requests ($CONNS connections) --"
echo "  start: $(rss_kb $GW_PID) kB"
done_n=0
while [ "$done_n" -lt "$TOTAL" ]; do
    read -r n s _ <<<"$(run rss "$GW_URL" auto "" "$CONNS" "$SECS" 0)"
    [ "$n" -gt 0 ] || { echo "gateway bench: no requests completed"; exit 1; }
    done_n=$((done_n + n))
    echo "  after $done_n requests: RSS $(rss_kb $GW_PID) kB"
done
echo "  peak RSS (VmHWM) after $done_n requests: $(hwm_kb $GW_PID) kB"
