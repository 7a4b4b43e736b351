#!/usr/bin/env bash
# Limits benchmark, against the simulator:
#  1. latency of admitted requests when twice a model's limit is offered (open loop, 1000/s
#     against a 500/s limit), next to the same admitted rate with no limit in the way;
#  2. gateway CPU per request of checking a limit, in process and in Redis (plus Redis's own
#     CPU per request), with closed-loop wrk load on a model whose limit is never reached.
#
# Usage: bench/limits.sh [duration_seconds]      (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
PROFILE="${BENCH_PROFILE:-bench-release}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# BENCH_BIN and BENCH_LOAD name already built binaries (skips the build).
if [ -n "${BENCH_BIN:-}" ] && [ -n "${BENCH_LOAD:-}" ]; then
  BIN="$BENCH_BIN"
  LOAD="$BENCH_LOAD"
else
  cargo build --profile "$PROFILE" --bin plexus --example openloop -p plexus-cli
  BIN="target/$PROFILE/plexus"
  LOAD="target/$PROFILE/examples/openloop"
fi
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

cleanup() { kill "${GW_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
PLEXUS_LOG=warn "$BIN" mock --listen 127.0.0.1:4010 >/dev/null &
MOCK_PID=$!

start_gateway() { # config
  rm -f bench/plexus-bench.db*
  PLEXUS_LOG=warn "$BIN" serve --config "$1" >/dev/null &
  GW_PID=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:4000/health >/dev/null && return
    sleep 0.1
  done
  echo "gateway did not start" >&2
  exit 1
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }

wrk_cpu() { # model -> "rps us_per_request redis_us_per_request"
  local before after rb ra out n
  before=$(cpu_ticks "$GW_PID")
  rb=$( [ -n "${REDIS_PID:-}" ] && cpu_ticks "$REDIS_PID" || echo 0)
  out=$(BENCH_MODEL="$1" wrk -t2 -c64 -d"${DURATION}s" -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions)
  after=$(cpu_ticks "$GW_PID")
  ra=$( [ -n "${REDIS_PID:-}" ] && cpu_ticks "$REDIS_PID" || echo 0)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "unexpected errors: $out" >&2; fi
  awk -v g=$((after - before)) -v r=$((ra - rb)) -v hz="$TICKS" -v n="$n" -v rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    'BEGIN {printf "%s req/s, gateway %.1f us/request, redis %.1f us/request", rps, g / hz * 1e6 / n, r / hz * 1e6 / n}'
}

echo "== in-process limits"
start_gateway bench/plexus-limits.yaml
BENCH_MODEL=gpt wrk -t2 -c64 -d5s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions >/dev/null
echo "-- 500/s, no limit in the way (model gpt):"
"$LOAD" --model gpt --rate 500 --duration "$DURATION"
echo "-- drain the burst allowance of model capped (30000/min), then offer twice its rate:"
BENCH_MODEL=capped wrk -t2 -c64 -d4s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions >/dev/null
"$LOAD" --model capped --rate 1000 --duration "$DURATION"
echo "-- CPU (closed loop, 64 connections):"
echo "no limit (gpt):           $(wrk_cpu gpt)"
echo "in-process limit (roomy): $(wrk_cpu roomy)"
stop_gateway

echo "== limits in Redis"
REDIS_PID=$(pgrep -x redis-server | head -1 || true)
start_gateway bench/plexus-limits-redis.yaml
BENCH_MODEL=roomy wrk -t2 -c64 -d5s -s bench/chat.lua http://127.0.0.1:4000/v1/chat/completions >/dev/null
echo "no limit (gpt):           $(wrk_cpu gpt)"
echo "Redis limit (roomy):      $(wrk_cpu roomy)"
stop_gateway
