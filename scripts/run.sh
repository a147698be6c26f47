#!/usr/bin/env bash
# `make run`: route the example queries with the bundled config, then start
# the gateway (`llmroute serve`) on it with mock backends and print requests
# to try. LLMROUTE_LISTEN overrides the address (default 127.0.0.1:8080).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
LISTEN=${LLMROUTE_LISTEN:-127.0.0.1:8080}
echo "llmroute: routing examples/queries.txt with examples/llmroute.json (sequential)"
"$BUILD/llmroute" route --config examples/llmroute.json --json <examples/queries.txt
URL="http://$LISTEN"
cat <<MSG

llmroute: starting the gateway on $URL (mock backends; Ctrl-C to stop).
Try, from another terminal:

  curl -s $URL/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
  curl -sN $URL/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "cheap-first", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
  curl -s $URL/v1/models
  curl -s $URL/metrics | grep llmroute_requests_total

MSG
exec "$BUILD/llmroute" serve --config examples/llmroute.json --listen "$LISTEN"
