-- wrk script: every request carries a bearer token from a file (one token per line).
-- Requests are pre-built at start-up so the script adds the same small, constant cost to
-- every variant. At the end, one line "BENCH_JSON {...}" carries the summary for the harness.
--
--   wrk -t T ... -s tokens.lua URL -- TOKEN_FILE START THREADS
--
-- Thread t sends tokens START+t, START+t+T, START+t+2T, … (wrapping at the end of the
-- file), so together the threads walk the file in order from START. The harness passes,
-- as START, the position where the previous run against the same Worker stopped: the
-- walk never restarts at a token the Worker has just seen, and with more tokens than the
-- Worker's verified-token cache holds, no request of a rotating workload is a cache hit.

local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

local requests = {}
local count = 0
local index = 0
local step = 1

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
  step = tonumber(args[3] or "1")
  index = (tonumber(args[2] or "0") + (id or 0)) % count
end

function request()
  local r = requests[index + 1]
  index = (index + step) % count
  return r
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
