-- wrk script: every request carries a bearer token from a file (one token per line),
-- rotated in order; each thread starts at a different offset. Requests are pre-built at
-- start-up so the script adds the same small, constant cost to every variant.
-- At the end, one line "BENCH_JSON {...}" carries the summary for the harness.
--
--   wrk ... -s tokens.lua http://127.0.0.1:PORT/forward/bench -- /path/to/tokens.txt

local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

local requests = {}
local count = 0
local index = 0

function init(args)
  local path = args[1]
  local file = assert(io.open(path, "r"), "cannot open token file " .. tostring(path))
  for token in file:lines() do
    if #token > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. token })
    end
  end
  file:close()
  assert(count > 0, "no tokens in " .. path)
  -- Spread the threads over the set so they do not send the same token at the same time.
  index = ((id or 0) * 7919) % count
end

function request()
  index = index + 1
  if index > count then
    index = 1
  end
  return requests[index]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99)))
end
