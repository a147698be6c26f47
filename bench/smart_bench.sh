#!/usr/bin/env bash
# One smart routing decision against a 100,000-record history (built-in
# embedder, exact kNN, k=16, 11 models), on two synthetic corpora, each
# beside its anchor measured in the same run: brute-force cosine kNN over
# sparse TF-IDF vectors (word 1-2-grams) of the same corpus in Python:
# scikit-learn's NearestNeighbors, a direct scipy sparse product, and that
# product over vectors cut to the 128 strongest features as tfidf-v1 cuts
# them (the like-for-like ratio).
#   zipf     a few templates, then Zipf-distributed words (mean 1.5 KB)
#   fewshot  shaped like real traffic: most queries of a task share the same
#            ~1.2 KB of few-shot examples; only the last question differs
# Latencies are quantiles over every query, the median of 5 runs; the C side
# also prints CPU time, which other jobs on the machine disturb less. Also
# prints import time and peak RSS. When ../shared/data/routerbench_subset is
# present, also times decisions on it (train split as the history, test
# split as queries); nothing derived from it is written outside a temporary
# folder. Takes several minutes: the Python side fits TF-IDF twice.
#   bench/smart_bench.sh [build-dir] [records]
set -euo pipefail
BUILD=${1:-build}
N=${2:-100000}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/smart_bench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
# The first interpreter that has scikit-learn (Debian's python3-sklearn lives
# under /usr/bin/python3 even when another python3 comes first in PATH).
PY=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$cand" -c 'import sklearn' 2>/dev/null; then PY=$cand; break; fi
done
for corpus in zipf fewshot; do
    echo "== corpus $corpus"
    mkdir -p "$DIR/$corpus"
    c_out=$("$BUILD/bench/smart_bench" --corpus "$corpus" --records "$N" --queries 2000 \
        --runs 5 --dir "$DIR/$corpus")
    echo "$c_out" | grep -v '^C_P50_US='
    c=$(echo "$c_out" | sed -n 's/^C_P50_US=//p')
    rm -f "$DIR/$corpus"/smart_bench_history.*
    if [ -z "$PY" ]; then
        echo "anchor skipped: python3-sklearn is not installed (scripts/deps.sh bench)"
        continue
    fi
    py_out=$("$PY" bench/smart_anchor.py "$DIR/$corpus" 300)
    echo "$py_out" | grep -v '_P50_US='
    p=$(echo "$py_out" | sed -n 's/^PY_P50_US=//p')
    f=$(echo "$py_out" | sed -n 's/^PYFULL_P50_US=//p')
    s=$(echo "$py_out" | sed -n 's/^SK_P50_US=//p')
    "$PY" -c "import sys; c, p, f, s = map(float, sys.argv[1:5]); \
print(f'smart decision p50 {c:.1f} us vs the kNN alone in Python over the same cut vectors '
      f'{p:.1f} us: {p / c:.1f}x (full vectors {f / c:.1f}x, sklearn NearestNeighbors {s / c:.0f}x)')" \
        "$c" "$p" "$f" "$s"
    rm -rf "${DIR:?}/$corpus"
done
REAL=../shared/data/routerbench_subset/routerbench_subset_qaserve_format.json
echo "== real data"
if [ -f "$REAL" ]; then
    mkdir -p "$DIR/real"
    "$BUILD/bench/smart_bench" --data "$REAL" --runs 5 --dir "$DIR/real" | grep -v '^C_P50_US='
else
    echo "skipped: $REAL is not here"
fi
