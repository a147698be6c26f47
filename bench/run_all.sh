#!/usr/bin/env bash
# Run every benchmark, each printing its ratio against its named anchor.
#   bench/run_all.sh [build-dir]
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
status=0
echo "== route_bench: sequential decisions/s vs a mutex-protected counter =="
"$BUILD/bench/route_bench" || status=1
for script in bench/*.sh; do
    [ "$(basename "$script")" = run_all.sh ] && continue
    echo
    echo "== $script =="
    bash "$script" "$BUILD" || status=1
done
exit $status
