-- wrk script for benches/gateway.sh: POST /v4/hash bodies made beforehand, one after another.
--
-- Environment (read by every wrk thread):
--   GW_BODIES   directory holding body_000.json, body_001.json, ... (read until one is missing)
--   GW_TOKEN    endpoint token sent as the `apikey` header
--   GW_HASHES   hashes per body (default 1000), for the hashes/s figure
--   GW_LABEL    label printed on the RESULT line (default "gateway")
--   GW_THREADS  wrk's -t, to spread the threads' starting bodies (default 1)
--
-- Every thread reads all bodies at init and formats each request once; thread i starts at body
-- i * (bodies / threads) so that the threads do not ask for the same digests at the same time.
-- done() prints a readable summary and one machine-readable line:
--   RESULT label=... requests=... duration_s=... rps=... hashes_per_s=... p50_ms=... p90_ms=...
--          p99_ms=... max_ms=... non2xx=... connect=... read=... write=... timeout=...
-- non2xx is wrk's summary.errors.status: responses with a status of 400 or more.

local dir = os.getenv("GW_BODIES") or "."
local token = os.getenv("GW_TOKEN") or ""
local per_body = tonumber(os.getenv("GW_HASHES") or "1000")
local label = os.getenv("GW_LABEL") or "gateway"

wrk.method = "POST"
wrk.headers["apikey"] = token
wrk.headers["Content-Type"] = "application/json"

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local requests_ = {}
local n = 0
local next_ = 0

function init(args)
   local i = 0
   while true do
      local f = io.open(string.format("%s/body_%03d.json", dir, i), "rb")
      if not f then break end
      local body = f:read("*a")
      f:close()
      -- wrk.format uses wrk.method, wrk.path and wrk.headers, and adds Content-Length.
      requests_[i + 1] = wrk.format(nil, nil, nil, body)
      i = i + 1
   end
   n = i
   if n == 0 then
      error("gateway_post.lua: no " .. dir .. "/body_000.json")
   end
   -- setup() and init() run thread by thread, so the thread count comes from the environment.
   local nthreads = tonumber(os.getenv("GW_THREADS") or "1") or 1
   next_ = math.floor((id or 0) * n / nthreads) % n
end

function request()
   next_ = next_ + 1
   if next_ > n then next_ = 1 end
   return requests_[next_]
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local rps = summary.requests / secs
   local e = summary.errors
   local ms = function(us) return us / 1000 end
   io.write(string.format("  %s: %d requests in %.2f s: %.1f requests/s, %.0f hashes/s\n",
      label, summary.requests, secs, rps, rps * per_body))
   io.write(string.format("  latency per request: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
      ms(latency.max)))
   io.write(string.format("  non-2xx (status >= 400): %d; socket errors: connect %d, read %d, write %d, timeout %d\n",
      e.status, e.connect, e.read, e.write, e.timeout))
   io.write(string.format(
      "RESULT label=%s requests=%d duration_s=%.3f rps=%.2f hashes_per_s=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      label, summary.requests, secs, rps, rps * per_body,
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency.max),
      e.status, e.connect, e.read, e.write, e.timeout))
end
