#!/usr/bin/env bash
# `make run`: route the example queries with the bundled config, then start
# the gateway (`llmroute serve`) on it with mock backends and print requests
# to try. LLMROUTE_LISTEN overrides the address (default 127.0.0.1:8080).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
LISTEN=${LLMROUTE_LISTEN:-127.0.0.1:8080}
STORE="$BUILD/example-history.db"
rm -f "$STORE" "$STORE-wal" "$STORE-shm"
echo "llmroute: importing the example history (examples/history.jsonl) into $STORE"
"$BUILD/llmroute" import --store "$STORE" examples/history.jsonl
echo
echo "llmroute: routing examples/queries.txt with the smart strategy"
"$BUILD/llmroute" route --config examples/llmroute.json --strategy smart --store "$STORE" \
    --json <examples/queries.txt
URL="http://$LISTEN"
cat <<MSG

llmroute: starting the gateway on $URL (mock backends, history $STORE; Ctrl-C to stop).
The route "auto" is smart: it predicts each model's quality from the history
and picks the cheapest model that meets 0.7 (see the x-llmroute-* headers).
Try, from another terminal:

  curl -si $URL/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
  curl -sN $URL/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "cheap-first", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
  curl -sN $URL/v1/responses -H 'Content-Type: application/json' \\
       -d '{"model": "auto", "stream": true, "input": "Write a haiku about the sea"}'
  curl -s $URL/v1/feedback -H 'Content-Type: application/json' \\
       -d '{"query": "What is 2 plus 2?", "model": "qwen2.5:7b", "correctness": 1, "output_tokens": 5}'
  curl -s $URL/v1/models
  curl -s $URL/metrics | grep llmroute_requests_total

MSG
exec "$BUILD/llmroute" serve --config examples/llmroute.json --store "$STORE" --listen "$LISTEN"
