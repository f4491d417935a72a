-- wrk script for the check before measuring: counts responses that are a 200 with the
-- expected body length (first script argument) and a request id header, and prints the
-- totals. Slower than stats.lua (Lua sees every response), so used only for checking.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  want = tonumber(args[1])
  ok, bad, noid, last = 0, 0, 0, ""
end

function response(status, headers, body)
  if status == 200 and #body == want then
    ok = ok + 1
  else
    bad = bad + 1
    last = status .. " with " .. #body .. " bytes"
  end
  if not (headers["X-Request-Id"] or headers["x-request-id"]) then
    noid = noid + 1
  end
end

function done(summary, latency, requests)
  local o, b, n, l = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
    n = n + t:get("noid")
    if t:get("last") ~= "" then l = t:get("last") end
  end
  local e = summary.errors
  io.write(string.format("VERIFY ok=%d bad=%d noid=%d errors=%d last=%s\n",
    o, b, n, e.connect + e.read + e.write + e.status + e.timeout, l))
end
