#!/usr/bin/env bash
# Run the benchmarks that need no data or setup beyond the build, each
# printing its ratio against its named anchor:
#   bench/run_all.sh [build-dir]
# route_bench, dense_bench (two corpora), then every bench/*.sh: faults,
# gateway, open_bench, optimize_bench, optimize_caps_bench, python,
# python_add, smart_bench. Expect tens of minutes on a 2-core machine (not timed as a
# whole): smart_bench.sh builds and imports two 100,000-record stores,
# optimize_bench.sh and optimize_caps_bench.sh wait on CBC (up to 300 s a
# solve), gateway.sh sends over a million requests.
#
# Not run here (each is run by hand; the script lists them at the end):
#   rebuild_bench   needs a large store (the 100,000-record one smart_bench
#                   --dir DIR leaves) and a tmpfs folder; on a small store the
#                   rebuild ends before the timed append and it has no figure
#   regroup_bench   100,000 appends of 384-d vectors with a writer thread:
#                   minutes on its own, and its figure compares two builds
#                   run alternately by hand
#   predict_eval, bench/predict_compare.py, bench/predict_lsa.py,
#   bench/predict_stack.py, bench/predict_twins.py
#                   need the development data (not shipped) and scikit-learn
#   open_bench on the 100,000-record store
#                   needs that store from smart_bench --dir DIR (open_bench.sh
#                   times the example history and, if present, the
#                   development data)
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
status=0
echo "bench/run_all.sh: route_bench, dense_bench and bench/*.sh; expect tens of minutes"
echo
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
echo
echo "== not run by this script (run by hand; see each file's header) =="
echo "  rebuild_bench: needs a large store (smart_bench --dir DIR leaves one) and a tmpfs folder"
echo "  regroup_bench: minutes on its own; its figures compare builds run alternately by hand"
echo "  predict_eval + bench/predict_compare.py, bench/predict_lsa.py, bench/predict_stack.py, bench/predict_twins.py: need the development data and scikit-learn"
echo "  open_bench on the 100,000-record store: needs the store smart_bench --dir DIR leaves"
exit $status
