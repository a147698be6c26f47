#!/usr/bin/env bash
# One smart routing decision against a 100,000-record history (built-in
# embedder, exact kNN, k=16, 11 models), beside its anchor measured in the
# same run: brute-force cosine kNN over sparse TF-IDF vectors (word 1-2-grams)
# of the same synthetic corpus in Python, by scikit-learn's NearestNeighbors
# and by a direct scipy sparse product (the faster, and the ratio to quote).
# Also prints import time and peak RSS. Takes several minutes: the Python
# side fits TF-IDF over the whole corpus.
#   bench/smart_bench.sh [build-dir] [records]
set -euo pipefail
BUILD=${1:-build}
N=${2:-100000}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/smart_bench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
c_out=$("$BUILD/bench/smart_bench" --records "$N" --queries 3000 --dir "$DIR")
echo "$c_out" | grep -v '^C_P50_US='
c=$(echo "$c_out" | sed -n 's/^C_P50_US=//p')
# The first interpreter that has scikit-learn (Debian's python3-sklearn lives
# under /usr/bin/python3 even when another python3 comes first in PATH).
PY=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$cand" -c 'import sklearn' 2>/dev/null; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
    echo "anchor skipped: python3-sklearn is not installed (scripts/deps.sh bench)"
    exit 0
fi
py_out=$("$PY" bench/smart_anchor.py "$DIR" 300)
echo "$py_out" | grep -v '_P50_US='
p=$(echo "$py_out" | sed -n 's/^PY_P50_US=//p')
s=$(echo "$py_out" | sed -n 's/^SK_P50_US=//p')
"$PY" -c "import sys; c, p, s = map(float, sys.argv[1:4]); \
print(f'smart decision p50 {c:.1f} us; the kNN alone in Python: scipy {p:.1f} us ({p / c:.1f}x), '
      f'sklearn NearestNeighbors {s:.1f} us ({s / c:.0f}x)')" "$c" "$p" "$s"
