#!/usr/bin/env bash
# Gateway benchmark: wrk (keep-alive, concurrency 64) against the simulator alone, then against
# the gateway in front of it, then against nginx proxying to the same simulator (the reference).
# Reports throughput, p50/p99 latency, and the CPU time per request of the gateway process and
# of nginx's worker (from /proc), and their ratio: absolute times vary between machines, the
# ratio much less.
#
# Usage: bench/run.sh [duration_seconds] [connections]     (defaults: 20, 64)
# BENCH_PIN=1 pins the gateway to CPU 1 and wrk and the simulator to CPU 0, so the gateway's
# figure is not disturbed by sharing a core with its load (steadier on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNS="${2:-64}"
. bench/lib.sh
start_servers bench/plexus.yaml

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

echo "through nginx, the reference proxy (${DURATION}s, ${CONNS} connections)..."
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx; }
mkdir -p /tmp/plexus-bench-nginx
$PIN_GW nginx -c "$PWD/bench/nginx.conf" -p /tmp/plexus-bench-nginx &
NGINX_PID=$!
for _ in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:4020/ && break
  sleep 0.1
done
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
nb=$(cpu_ticks "$NGINX_WORKER")
NG=$(run_wrk http://127.0.0.1:4020/v1/chat/completions gpt-4o-mini)
na=$(cpu_ticks "$NGINX_WORKER")
kill "$NGINX_PID" 2>/dev/null || true
NGINX_US=$(awk -v t=$((na - nb)) -v hz="$TICKS" -v n="$(total "$NG")" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
echo "== via nginx";        echo "requests/s: $(rps "$NG")  p50: $(field "$NG" 50%)  p99: $(field "$NG" 99%)  requests: $(total "$NG")  $(errors "$NG")"
echo "nginx CPU per request: ${NGINX_US} us (its worker)"
echo "gateway / nginx CPU per request: $(awk -v g="$CPU_US" -v n="$NGINX_US" 'BEGIN {printf "%.2f", g / n}')"
