#!/usr/bin/env bash
# Gateway benchmark: wrk (keep-alive, concurrency 64) against the simulator alone, then against
# the gateway in front of it. Reports throughput, p50/p99 latency, the latency the gateway adds,
# and the gateway process's CPU time per request (from /proc, gateway process only).
#
# Usage: bench/run.sh [duration_seconds] [connections]     (defaults: 20, 64)
# BENCH_PIN=1 pins the gateway to CPU 1 and wrk and the simulator to CPU 0, so the gateway's
# figure is not disturbed by sharing a core with its load (steadier on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNS="${2:-64}"
THREADS=2
PROFILE="${BENCH_PROFILE:-bench-release}"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# BENCH_BIN names an already built binary (skips the build).
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --profile "$PROFILE" --bin plexus
  BIN="target/$PROFILE/plexus"
fi
rm -f bench/plexus-bench.db*

cleanup() { kill "${GW_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

PIN_LOAD=""
PIN_GW=""
if [ "${BENCH_PIN:-0}" = 1 ]; then
  PIN_LOAD="taskset -c 0"
  PIN_GW="taskset -c 1"
  THREADS=1
fi
PLEXUS_LOG=warn $PIN_LOAD "$BIN" mock --listen 127.0.0.1:4010 >/dev/null &
MOCK_PID=$!
PLEXUS_LOG=warn $PIN_GW "$BIN" serve --config bench/plexus.yaml >/dev/null &
GW_PID=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:4000/health >/dev/null && break
  sleep 0.1
done

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() { # url model
  BENCH_MODEL="$2" $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s bench/chat.lua "$1"
}
field() { # wrk output, percentile label
  awk -v p="$2" '$1==p {print $2}' <<<"$1"
}
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
total() { awk '/requests in/ {print $1}' <<<"$1"; }
errors() { awk '/Non-2xx|Socket errors/' <<<"$1"; }

echo "warm-up (5 s)..."
BENCH_MODEL=gpt $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d5s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions >/dev/null

echo "simulator alone (${DURATION}s, ${CONNS} connections)..."
mb=$(cpu_ticks "$MOCK_PID")
BASE=$(run_wrk http://127.0.0.1:4010/v1/chat/completions gpt-4o-mini)
ma=$(cpu_ticks "$MOCK_PID")
MOCK_US=$(awk -v t=$((ma - mb)) -v hz="$TICKS" -v n="$(total "$BASE")" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')

echo "through the gateway (${DURATION}s, ${CONNS} connections)..."
before=$(cpu_ticks "$GW_PID")
GW=$(run_wrk http://127.0.0.1:4000/v1/chat/completions gpt)
after=$(cpu_ticks "$GW_PID")

N=$(total "$GW")
CPU_US=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$N" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
echo
echo "== simulator alone";  echo "requests/s: $(rps "$BASE")  p50: $(field "$BASE" 50%)  p99: $(field "$BASE" 99%)  simulator CPU per request: ${MOCK_US} us  $(errors "$BASE")"
echo "== via gateway";      echo "requests/s: $(rps "$GW")  p50: $(field "$GW" 50%)  p99: $(field "$GW" 99%)  requests: $N  $(errors "$GW")"
echo "gateway CPU per request: ${CPU_US} us (utime+stime of the gateway process / requests)"
