#!/usr/bin/env bash
# QueryStore.add_data one record at a time against the same records in one
# call, at store sizes 1,000 and 10,000 (bench/python_add_bench.py).
#   bench/python_add.sh [build-dir] [--adds N] [--rounds R] [--sizes 1000,10000] [--dense]
#                       [--cap N]
# --cap N opens both stores with max_records=N.
# Needs only the build and python3 (no numpy).
set -u
BUILD=${1:-build}
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/.."
lib="$BUILD/libllmroute.so"
if [ ! -e "$lib" ]; then
    echo "bench/python_add.sh: $lib not found: build first (make build)" >&2
    exit 1
fi
LLMROUTE_LIB=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib") PYTHONPATH=bindings/python \
    exec python3 bench/python_add_bench.py "$@"
