-- wrk script for measured runs: prints one machine-readable line at the end.
-- It defines no response() callback, so wrk stays as fast as without a script;
-- status and body checks happen in verify.lua runs and through errors.status here.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
