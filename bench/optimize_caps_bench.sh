#!/usr/bin/env bash
# optimize_caps_bench.sh -- the batch optimizer over 100 models of capacity
# 11, 10 and 9 (1,000 queries), against CBC and, for the infeasible
# capacity 9, against itself on the capacity that holds the batch.
#   bench/optimize_caps_bench.sh [BUILD_DIR] [extra optimize_caps.py options]
# e.g. --old OLD/bench/optimize_bench to run another version alternately,
# --no-cbc to leave CBC out (about a minute a solve). Builds nothing.
# Uses Debian's python3, where python3-pulp is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
shift || true
exec /usr/bin/python3 "$here/optimize_caps.py" --bench "$build/bench/optimize_bench" "$@"
