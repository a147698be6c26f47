#!/usr/bin/env bash
# bench/gateway.sh -- llmroute serve against two anchors, on one upstream, in
# one run: wrk straight to the fake upstream ("direct"), through llmroute, and
# through the Portkey AI gateway (npm @portkey-ai/gateway). Everything binds
# 127.0.0.1; every process started here is killed on exit.
#
#   bench/gateway.sh BUILD_DIR
#
# Prints, for each target, throughput and p50/p99 latency at fixed concurrency
# (saturation); then direct vs llmroute paced to about 5,000 requests/s (wrk's
# per-connection delay(), since wrk2 is not packaged), with llmroute's overhead
# over direct; then llmroute's RSS as requests accumulate to 1,000,000.
# Environment: FAKE_UPSTREAM (path), BENCH_SECONDS (default 10), BENCH_CONNS
# (default 32), BENCH_TOTAL (default 1000000), BENCH_SKIP_PORTKEY=1.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
SRC=$(pwd)
LLMROUTE=$BUILD/llmroute
FAKE=${FAKE_UPSTREAM:-$BUILD/tests/fake_upstream/fake_upstream}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-32}
TOTAL=${BENCH_TOTAL:-1000000}
LUA=$SRC/bench/gateway/post.lua
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llmroute-bench.XXXXXX")
PIDS=()

cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for tool in wrk python3; do
    command -v $tool >/dev/null || { echo "gateway bench: $tool is missing (make bench installs it)"; exit 1; }
done
[ -x "$LLMROUTE" ] || { echo "gateway bench: $LLMROUTE not built"; exit 1; }
[ -x "$FAKE" ] || { echo "gateway bench: fake upstream $FAKE not built"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port_file() { for _ in $(seq 200); do [ -s "$1" ] && { cat "$1"; return 0; }; sleep 0.05; done; return 1; }
wait_http() { for _ in $(seq 300); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done; return 1; }
ms() { python3 -c "print('%.3f' % ($1 / 1000))"; }  # microseconds -> ms
rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/$1/status; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' /proc/$1/status; }

# ---- the upstream ----
"$FAKE" --listen 127.0.0.1:0 --port-file "$TMP/fake.port" 2>"$TMP/fake.err" &
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
"$LLMROUTE" serve --config "$TMP/llmroute.json" --port-file "$TMP/gw.port" 2>/dev/null &
GW_PID=$!
PIDS+=($GW_PID)
GW_PORT=$(wait_port_file "$TMP/gw.port") || { echo "llmroute did not start"; exit 1; }

# ---- Portkey ----
PK_PORT=""
if [ "${BENCH_SKIP_PORTKEY:-0}" != 1 ]; then
    NPM=$BUILD/bench-npm
    if [ ! -f "$NPM/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
        echo "installing @portkey-ai/gateway into $NPM ..."
        mkdir -p "$NPM"
        # Its streaming needs the versions from its own lockfile.
        npm install --prefix "$NPM" --no-audit --no-fund --no-save \
            @portkey-ai/gateway@1.15.2 @hono/node-server@1.13.5 hono@4.9.7 >"$TMP/npm.log" 2>&1 ||
            { cat "$TMP/npm.log"; echo "gateway bench: npm could not install Portkey"; exit 1; }
    fi
    PK_PORT=$(free_port)
    (cd "$NPM" && exec node --import "$SRC/bench/gateway/bind-local.mjs" \
        node_modules/@portkey-ai/gateway/build/start-server.js --port="$PK_PORT") \
        >"$TMP/portkey.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$PK_PORT/" || { cat "$TMP/portkey.log"; exit 1; }
    if ss -ltnH "sport = :$PK_PORT" | awk '{print $4}' | grep -qv '^127\.0\.0\.1:'; then
        echo "gateway bench: Portkey is listening beyond 127.0.0.1"; ss -ltnp "sport = :$PK_PORT"; exit 1
    fi
fi
PK_HEADERS="x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$FAKE_PORT/v1|Authorization: Bearer x"

# run NAME URL MODEL HEADERS CONNS SECONDS DELAY_MS -> "requests seconds p50 p90 p99 p999 max errors"
run() {
    WRK_MODEL=$3 WRK_HEADERS=$4 WRK_DELAY_MS=$7 wrk -t1 -c"$5" -d"$6"s -s "$LUA" "$2" \
        >"$TMP/wrk.$1.out" 2>&1 || true
    grep '^RESULT' "$TMP/wrk.$1.out" | tail -1 | cut -d' ' -f2- || echo "0 1 0 0 0 0 0 1"
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
echo "-- saturation: $CONNS connections, ${SECS}s each --"
printf '%-10s %12s %10s %10s %10s %8s\n' target req/s p50_ms p99_ms max_ms errors
declare -A RPS
for t in direct llmroute portkey; do
    case $t in
    direct) url=$DIRECT_URL; model=fake; hdr="" ;;
    llmroute) url=$GW_URL; model=auto; hdr="" ;;
    portkey) [ -n "$PK_PORT" ] || continue; url=$PK_URL; model=fake; hdr=$PK_HEADERS ;;
    esac
    run "$t-warm" "$url" "$model" "$hdr" "$CONNS" 2 0 >/dev/null
    read -r n s p50 p90 p99 p999 max err <<<"$(run "$t" "$url" "$model" "$hdr" "$CONNS" "$SECS" 0)"
    rps=$(python3 -c "print(round($n/$s))")
    RPS[$t]=$rps
    printf '%-10s %12s %10.3f %10.3f %10.3f %8s\n' "$t" "$rps" "$(ms $p50)" \
        "$(ms $p99)" "$(ms $max)" "$err"
done
if [ -n "${RPS[portkey]:-}" ] && [ "${RPS[portkey]}" -gt 0 ]; then
    echo "llmroute / portkey throughput: $(python3 -c "print(f'{${RPS[llmroute]}/${RPS[portkey]}:.1f}x')") (target >= 5x)"
fi
echo "llmroute / direct throughput:  $(python3 -c "print(f'{${RPS[llmroute]}/${RPS[direct]}:.2f}')")"

echo
echo "-- paced: 50 connections x (request, 10 ms pause) ~ 5,000 req/s, 20s each --"
printf '%-10s %12s %10s %10s %10s %10s %8s\n' target req/s p50_ms p90_ms p99_ms p99.9_ms errors
declare -A P50 P99 P999
for t in direct llmroute; do
    case $t in
    direct) url=$DIRECT_URL; model=fake ;;
    llmroute) url=$GW_URL; model=auto ;;
    esac
    read -r n s p50 p90 p99 p999 max err <<<"$(run "$t-paced" "$url" "$model" "" 50 20 10)"
    P50[$t]=$p50; P99[$t]=$p99; P999[$t]=$p999
    printf '%-10s %12s %10.3f %10.3f %10.3f %10.3f %8s\n' "$t" "$(python3 -c "print(round($n/$s))")" \
        "$(ms $p50)" "$(ms $p90)" "$(ms $p99)" \
        "$(ms $p999)" "$err"
done
echo "llmroute overhead over direct: p50 +$(ms $((P50[llmroute] - P50[direct]))) ms," \
     "p99 +$(ms $((P99[llmroute] - P99[direct]))) ms (target p99 < 1 ms)"
# The gateway's own view: request time not spent waiting on the upstream.
curl -s "http://127.0.0.1:$GW_PORT/metrics" | python3 -c '
import sys
b = {}
for l in sys.stdin:
    if l.startswith("llmroute_gateway_overhead_seconds_bucket"):
        le = l.split("le=\"")[1].split("\"")[0]
        b[le] = float(l.rsplit(" ", 1)[1])
n = b["+Inf"]
for le in ("0.0001", "0.00025", "0.0005", "0.001"):
    print("  gateway-measured overhead <= %6.3f ms: %.3f%% of %d requests" % (float(le) * 1000, 100 * b[le] / n, n))
'

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
