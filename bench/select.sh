#!/usr/bin/env bash
# The model selector's cost: gateway CPU per request for a plain model and for `model: auto`
# (every request a new prompt: embedded with the local MiniLM and decided afresh), and the
# embedding and decision times the records keep (p50/p99, microseconds).
#
# Usage: [PLEXUS_MINILM_DIR=...] bench/select.sh [seconds] [connections]   (defaults: 10, 8)
# Without PLEXUS_MINILM_DIR the selector has no embedder: it decides without embedding.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-8}"
if [ -n "${PLEXUS_MINILM_DIR:-}" ]; then export PLEXUS_MINILM_DIR; else echo "no PLEXUS_MINILM_DIR: deciding without embeddings"; fi
. bench/lib.sh
start_servers bench/plexus-select.yaml

run() { # model script -> requests/s and gateway CPU µs per request
  local before after out reqs
  before=$(cpu_ticks "$GW_PID")
  out=$(BENCH_MODEL="$1" $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$2" http://127.0.0.1:4000/v1/chat/completions)
  after=$(cpu_ticks "$GW_PID")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$1: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s, gateway CPU $(( (after - before) * 1000000 / TICKS / reqs )) µs/request ($(echo "$out" | awk '/Non-2xx/ {print $0}'))"
}

run gpt bench/chat.lua
run auto bench/select.lua
sleep 1
q() {
  sqlite3 bench/plexus-bench.db "SELECT json_extract(route, '\$.$1') FROM request_log WHERE route IS NOT NULL AND json_extract(route, '\$.affinity') = 0 ORDER BY 1" |
    awk -v name="$1" '{v[NR] = $1} END {if (NR) printf "%s: n=%d p50=%d µs p99=%d µs\n", name, NR, v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1]}'
}
q embed_us
q decide_us
sqlite3 bench/plexus-bench.db "SELECT json_extract(route, '\$.chosen'), json_extract(route, '\$.exploration'), count(*) FROM request_log WHERE route IS NOT NULL GROUP BY 1, 2"
