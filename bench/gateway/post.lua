-- wrk script: POST a small chat completion; extra headers from the environment
-- (WRK_HEADERS="Name: value|Name: value"); WRK_DELAY_MS paces each connection
-- (a request, then that pause) so a run can hold a fixed rate instead of
-- saturating. Prints one RESULT line: requests, seconds, p50/p90/p99/p99.9/max
-- latency in microseconds, errors.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or
  '{"model":"' .. (os.getenv("WRK_MODEL") or "fake") .. '","messages":[{"role":"system",' ..
  '"content":"You are terse."},{"role":"user","content":"What is the capital of France?"}],' ..
  '"temperature":0.2,"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
for h in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^|]+") do
  local k, v = h:match("^%s*([^:]+):%s*(.*)$")
  if k then wrk.headers[k] = v end
end

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if pause > 0 then
  function delay() return pause end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d %d\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
