#!/usr/bin/env bash
# One smart routing decision against a 100,000-record history (built-in
# embedder, exact kNN, k=16, 11 models), on two synthetic corpora, each
# beside its anchor: the same exact kNN (k=16, cosine) by brute force in
# Python, over the very vectors llmroute's index searches (smart_bench
# --export writes them out: tfidf-v1, hashed word and character features,
# 128 a vector), by scikit-learn's NearestNeighbors(metric="cosine",
# algorithm="brute") and by a direct scipy sparse product.
#   zipf     a few templates, then Zipf-distributed words (mean 1.5 KB)
#   fewshot  shaped like real traffic: most queries of a task share the same
#            ~1.2 KB of few-shot examples; only the last question differs
# First the neighbours are compared: scikit-learn's k neighbours of every
# query must be llmroute's (up to ties at the k-th similarity), or the
# script fails. Then ROUNDS rounds alternate, in this script: a C run over
# the Q queries (one timing each), then an anchor run (scipy over the same
# Q queries, scikit-learn over the first SK of them: it is slow). Printed:
# the median over rounds of each side's per-round p50, and the ratios of
# those medians; the C side also prints CPU time, which other jobs on the
# machine disturb less, the import time (first run) and peak RSS. When
# ../shared/data/routerbench_subset is present, also times decisions on it
# (train split as the history, test split as queries) and checks its
# neighbours the same way; nothing derived from it is written outside a
# temporary folder. Takes several minutes. Exits 3 when scikit-learn is
# missing (the C side's figures are printed, with no anchor beside them).
#   bench/smart_bench.sh [build-dir] [records] [rounds] [queries] [sklearn-queries]
set -euo pipefail
BUILD=${1:-build}
N=${2:-100000}
ROUNDS=${3:-5}
Q=${4:-2000}
SK=${5:-50}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/smart_bench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
# The first interpreter that has scikit-learn (Debian's python3-sklearn lives
# under /usr/bin/python3 even when another python3 comes first in PATH).
PY=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$cand" -c 'import sklearn' 2>/dev/null; then PY=$cand; break; fi
done
field() { echo "$1" | sed -n "s/^$2=//p"; }
for corpus in zipf fewshot; do
    echo "== corpus $corpus"
    mkdir -p "$DIR/$corpus"
    cs="" ks="" sps="" sks=""
    for r in $(seq "$ROUNDS"); do
        if [ "$r" = 1 ]; then
            c_out=$("$BUILD/bench/smart_bench" --corpus "$corpus" --records "$N" \
                --queries "$Q" --runs 1 --dir "$DIR/$corpus" --export)
            echo "$c_out" | grep -v '^C_' | grep -v '^decision latency\|^  of which'
            if [ -z "$PY" ]; then
                echo "anchor skipped: python3-sklearn is not installed (scripts/deps.sh bench)"
            else
                "$PY" bench/smart_anchor.py check "$DIR/$corpus"
            fi
        else
            c_out=$("$BUILD/bench/smart_bench" --corpus "$corpus" --records "$N" \
                --queries "$Q" --runs 1 --dir "$DIR/$corpus" --reuse)
        fi
        echo "round $r C: $(echo "$c_out" | grep '^decision latency' | sed 's/.*runs: //')," \
            "$(echo "$c_out" | grep '^  of which' | sed 's/^ *of which //')"
        cs="$cs $(field "$c_out" C_P50_US)"
        ks="$ks $(field "$c_out" C_KNN_P50_US)"
        nc=$(field "$c_out" C_QUERIES)
        [ -n "$PY" ] || continue
        a_out=$("$PY" bench/smart_anchor.py time "$DIR/$corpus" "$Q" "$SK")
        echo "round $r anchor: scipy p50 $(field "$a_out" SP_P50_US) us," \
            "scikit-learn p50 $(field "$a_out" SK_P50_US) us"
        sps="$sps $(field "$a_out" SP_P50_US)"
        sks="$sks $(field "$a_out" SK_P50_US)"
        nsp=$(field "$a_out" SP_QUERIES)
        nsk=$(field "$a_out" SK_QUERIES)
    done
    rm -f "$DIR/$corpus"/smart_bench_history.*
    if [ -n "$PY" ]; then
        "$PY" - "$ROUNDS" "$nc" "$nsp" "$nsk" "$cs" "$ks" "$sps" "$sks" <<'EOF'
import statistics as st
import sys
rounds, nc, nsp, nsk = sys.argv[1:5]
c, k, sp, sk = (st.median(map(float, a.split())) for a in sys.argv[5:9])
print(f"medians of {rounds} alternating rounds: llmroute decision p50 {c:.1f} us, "
      f"its exact kNN alone {k:.1f} us ({nc} queries a round); the same kNN over the "
      f"same vectors: scipy sparse product {sp:.1f} us ({nsp} queries), scikit-learn "
      f"NearestNeighbors brute {sk:.0f} us ({nsk} queries)")
print(f"ratio of medians, anchor / llmroute kNN: scipy {sp / k:.1f}x, scikit-learn "
      f"{sk / k:.0f}x; anchor kNN / llmroute whole decision: scipy {sp / c:.1f}x, "
      f"scikit-learn {sk / c:.0f}x")
EOF
    else
        echo "$cs" | tr ' ' '\n' | sort -n | awk 'NF{a[n++]=$1} END{if(n) print \
            "llmroute decision p50, median of rounds: " (n%2 ? a[int(n/2)] : \
            (a[n/2-1]+a[n/2])/2) " us"}'
    fi
    rm -rf "${DIR:?}/$corpus"
done
REAL=../shared/data/routerbench_subset/routerbench_subset_qaserve_format.json
echo "== real data"
if [ -f "$REAL" ]; then
    mkdir -p "$DIR/real"
    "$BUILD/bench/smart_bench" --data "$REAL" --runs 5 --dir "$DIR/real" --export |
        grep -v '^C_'
    [ -z "$PY" ] || "$PY" bench/smart_anchor.py check "$DIR/real"
else
    echo "skipped: $REAL is not here"
fi
# Without the anchor the figures above stand alone, which is no measure
# here: said, and failed (run_all.sh counts it).
if [ -z "$PY" ]; then
    echo "no anchor ran: python3-sklearn is not installed (scripts/deps.sh bench)" >&2
    exit 3
fi
