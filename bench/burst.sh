#!/usr/bin/env bash
# Memory after a connection burst: RSS of the gateway at rest, at the peak of a burst of
# BURST_CONNS (default 2000) concurrent keep-alive connections, and at intervals after it ends.
# Whatever the burst allocated (per-connection buffers, upstream pool connections, allocator
# pages) should be returned once it is over.
#
# Usage: bench/burst.sh [burst_seconds] [connections]     (defaults: 15, 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
CONNS="${2:-2000}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
. bench/lib.sh
start_servers bench/plexus.yaml

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$GW_PID/status"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$GW_PID/status"; }

# A short warm-up so the baseline includes what every run allocates once (caches, pools).
BENCH_MODEL=gpt wrk -t"$THREADS" -c16 -d3s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions >/dev/null
sleep 2
BEFORE=$(rss_mb)
echo "RSS at rest: ${BEFORE} MB"

echo "burst: ${CONNS} connections for ${DURATION}s..."
OUT=$(BENCH_MODEL=gpt wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions)
PEAK=$(hwm_mb)
echo "$OUT" | awk '/Requests\/sec|requests in|Socket errors|Non-2xx/'
echo "RSS peak (VmHWM): ${PEAK} MB"
for t in ${BURST_SAMPLES:-1 10 30 60}; do
  sleep $((t - ${prev:-0}))
  prev=$t
  echo "RSS ${t}s after the burst: $(rss_mb) MB; upstream connections: $(ss -tn state established "( dport = :4010 )" | tail -n +2 | wc -l)"
done
echo "summary: before ${BEFORE} MB, peak ${PEAK} MB, 60 s after $(rss_mb) MB"
