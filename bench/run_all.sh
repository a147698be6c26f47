#!/usr/bin/env bash
# Run every benchmark, each printing its ratio against its named anchor.
#   bench/run_all.sh [build-dir]
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
status=0
echo "== route_bench: sequential decisions/s vs a mutex-protected counter =="
"$BUILD/bench/route_bench" || status=1
echo
echo "== dense_bench: exact kNN over 100,000 dense rows vs the flat scan of every row =="
"$BUILD/bench/dense_bench" --corpus topics && "$BUILD/bench/dense_bench" --corpus iso || status=1
for script in bench/*.sh; do
    [ "$(basename "$script")" = run_all.sh ] && continue
    echo
    echo "== $script =="
    bash "$script" "$BUILD" || status=1
done
exit $status
