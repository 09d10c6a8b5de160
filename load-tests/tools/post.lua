-- wrk script for Prism's load tests: POST the JSON body in $WRK_BODY_FILE with a bearer key
-- ($WRK_KEY), and print one machine-readable summary line (WRKJSON {...}) at the end.

local path = os.getenv("WRK_BODY_FILE")
local f = assert(io.open(path, "rb"), "cannot open WRK_BODY_FILE " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_KEY") or "sk-loadtest")

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,'
      .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
