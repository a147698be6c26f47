-- wrk script for bench/faults.sh: POST a streamed chat completion and check
-- every answer the way a client would: status 200, and the stream ends with
-- `data: [DONE]` with no error event. Anything else is a client-visible
-- failure. Prints one RESULT line: requests, seconds, p50/p90/p99/p99.9/max
-- latency in microseconds, socket errors, client-visible failures.
wrk.method = "POST"
wrk.body = '{"model":"' .. (os.getenv("WRK_MODEL") or "auto") .. '","stream":true,' ..
  '"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  failures = 0
end

function response(status, headers, body)
  if status ~= 200 or not body or not string.find(body, "data: %[DONE%]\n\n$") or
      string.find(body, 'data: {"error"', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do f = f + (t:get("failures") or 0) end
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d %d %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.timeout, f))
end
