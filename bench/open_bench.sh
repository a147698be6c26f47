#!/usr/bin/env bash
# Opening a history store (the in-memory copy's rebuild) beside its anchor,
# SQLite's read of the same rows, which any open must do: build/bench/open_bench
# on a store of the bundled example history (64 records: the fixed cost a
# small store pays), and on the development data's train split when
# ../shared/data/routerbench_subset is there (2,205 records of long prompts;
# the store is written to a temporary folder and removed). The store of
# 100,000 records is timed the same way by hand: open_bench --store
# DIR/smart_bench_history.db after `smart_bench --dir DIR`.
#   bench/open_bench.sh [build-dir]
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/open_bench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT

echo "== example history (examples/history.jsonl)"
"$BUILD/llmroute" import --store "$DIR/example.db" examples/history.jsonl >/dev/null
"$BUILD/bench/open_bench" --store "$DIR/example.db" --rounds 15 | tail -2

DATA=../shared/data/routerbench_subset/routerbench_subset_qaserve_format.json
echo "== development data, train split"
if [ -f "$DATA" ]; then
    "$BUILD/llmroute" import --store "$DIR/dev.db" --split train "$DATA" >/dev/null
    "$BUILD/bench/open_bench" --store "$DIR/dev.db" --rounds 5 | tail -2
else
    echo "skipped: $DATA is not there"
fi
