#!/usr/bin/env bash
# `make run`: the main job on the bundled example config. Routes the example
# queries with the sequential strategy and prints each decision.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
echo "llmroute: routing examples/queries.txt with examples/llmroute.json (sequential)"
"$BUILD/llmroute" route --config examples/llmroute.json --json <examples/queries.txt
