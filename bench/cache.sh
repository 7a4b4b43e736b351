#!/usr/bin/env bash
# Cache benchmark: wrk (keep-alive) against the gateway with the exact response cache on, the
# same request every time, so every request after the first is a hit served from the
# in-process tier. Reports throughput, p50/p99 and the gateway's CPU time per request, and
# how many requests reached the simulator (one is expected).
#
# Usage: bench/cache.sh [duration_seconds] [connections]     (defaults: 20, 64)
# BENCH_BIN names an already built binary; BENCH_PIN=1 pins as in bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNS="${2:-64}"
. bench/lib.sh
start_servers bench/plexus-cache.yaml

run_wrk() { BENCH_MODEL=gpt $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"$1" --latency -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions; }

echo "warm-up (5 s)..."
run_wrk 5s >/dev/null
mock_before=$(cpu_ticks "$MOCK_PID")
echo "cache hits through the gateway (${DURATION}s, ${CONNS} connections)..."
before=$(cpu_ticks "$GW_PID")
OUT=$(run_wrk "${DURATION}s")
after=$(cpu_ticks "$GW_PID")
mock_after=$(cpu_ticks "$MOCK_PID")

N=$(awk '/requests in/ {print $1}' <<<"$OUT")
CPU_US=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$N" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
echo
echo "== cache hits via gateway"
echo "requests/s: $(awk '/Requests\/sec/ {print $2}' <<<"$OUT")  p50: $(awk '$1=="50%" {print $2}' <<<"$OUT")  p99: $(awk '$1=="99%" {print $2}' <<<"$OUT")  requests: $N  $(awk '/Non-2xx|Socket errors/' <<<"$OUT")"
echo "gateway CPU per request: ${CPU_US} us; simulator CPU during the run: $(( mock_after - mock_before )) ticks"
