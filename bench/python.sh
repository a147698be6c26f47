#!/usr/bin/env bash
# Routing decisions per second through the Python binding, against the same
# logic written in Python with numpy, measured in one run (bench/python_bench.py).
#   bench/python.sh [build-dir]
# (the build directory is the only argument; python_bench.py takes none)
# Uses a python3 that has numpy: Debian's /usr/bin/python3 with python3-numpy
# (scripts/deps.sh bench installs it), else the first python3 on PATH.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
lib="$BUILD/libllmroute.so"
if [ ! -e "$lib" ]; then
    echo "bench/python.sh: $lib not found: build first (make build)" >&2
    exit 1
fi
py=""
for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import numpy" 2>/dev/null; then
        py=$candidate
        break
    fi
done
if [ -z "$py" ]; then
    echo "bench/python.sh: no python3 with numpy; install python3-numpy (scripts/deps.sh bench)" >&2
    exit 1
fi
LLMROUTE_LIB=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib") PYTHONPATH=bindings/python \
    exec "$py" bench/python_bench.py
