#!/usr/bin/env bash
# optimize_bench.sh -- the batch optimizer against CBC, in one run.
#   bench/optimize_bench.sh [BUILD_DIR] [extra optimize_cbc.py options]
# Builds nothing: expects BUILD_DIR (default build) to hold bench/optimize_bench.
# Uses Debian's python3, where python3-pulp is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
shift || true
exec /usr/bin/python3 "$here/optimize_cbc.py" --bench "$build/bench/optimize_bench" "$@"
