#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by callgrind: repeatable on a noisy
# machine where CPU time is not (the same binary and inputs give the same count).
#
# Usage: bench/callgrind.sh [binary...]     (default: the bench-release build)
# For each binary: two runs under callgrind, N1 and N2 keep-alive requests (chat.lua's body, one
# client connection), and (Ir(N2) - Ir(N1)) / (N2 - N1) is reported, so start-up and shutdown
# cancel out. The gateway runs one tokio worker: idle workers looking for work execute a number
# of instructions that depends on timing, which would make the count vary from run to run.
# The simulator runs natively on 127.0.0.1:4010.
set -euo pipefail
cd "$(dirname "$0")/.."
N1="${N1:-400}"
N2="${N2:-2400}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  cargo build --profile bench-release --bin plexus
  BINS=(target/bench-release/plexus)
fi
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
"${BINS[0]}" mock --listen 127.0.0.1:4010 >/dev/null 2>&1 &

load() { # requests
  python3 - "$1" <<'PY'
import http.client, json, sys, threading
n = int(sys.argv[1])
body = json.dumps({"model": "gpt", "max_tokens": 32, "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Give me one short sentence about load testing."}]})
headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-master-key"}
def worker(count):
    c = http.client.HTTPConnection("127.0.0.1", 4000)
    for _ in range(count):
        c.request("POST", "/v1/chat/completions", body, headers)
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
worker(n)
PY
}

count() { # binary requests -> total instructions
  rm -f bench/plexus-bench.db*
  TOKIO_WORKER_THREADS=1 PLEXUS_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
    "$1" serve --config bench/plexus.yaml >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    curl -sf http://127.0.0.1:4000/health >/dev/null && break
    sleep 0.2
  done
  load "$2"
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^totals:/ {print $2}' "$OUT/cg.$pid"
}

for bin in "${BINS[@]}"; do
  a=$(count "$bin" "$N1")
  b=$(count "$bin" "$N2")
  echo "$bin: $(( (b - a) / (N2 - N1) )) instructions per request ($a at $N1, $b at $N2)"
done
