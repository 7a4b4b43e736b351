#!/usr/bin/env bash
# The Responses endpoint's cost: gateway CPU per request for the same prompt through
# `/v1/chat/completions` and through `/v1/responses`, passed through to an OpenAI-format
# simulator model (`responses: true`) or translated for an Anthropic-format one, with and
# without storing the response, plain and streamed.
#
# Usage: bench/responses.sh [seconds] [connections]   (defaults: 10, 16)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-16}"
. bench/lib.sh
start_servers bench/plexus.yaml

run() { # label path script model stream store
  local before after out reqs
  before=$(cpu_ticks "$GW_PID")
  out=$(BENCH_MODEL="$4" BENCH_STREAM="$5" BENCH_STORE="$6" $PIN_LOAD wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$3" "http://127.0.0.1:4000$2")
  after=$(cpu_ticks "$GW_PID")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$1: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s, gateway CPU $(( (after - before) * 1000000 / TICKS / reqs )) µs/request $(echo "$out" | awk '/Non-2xx|Socket errors/ {print "(" $0 ")"}')"
}

run "chat, gpt (openai)" /v1/chat/completions bench/chat.lua gpt 0 1
run "responses, gpt (pass-through), store: false" /v1/responses bench/responses.lua gpt 0 0
run "responses, gpt (pass-through), stored" /v1/responses bench/responses.lua gpt 0 1
run "responses, gpt (pass-through), streamed, stored" /v1/responses bench/responses.lua gpt 1 1
run "chat, claude (anthropic)" /v1/chat/completions bench/chat.lua claude 0 1
run "responses, claude (translated), store: false" /v1/responses bench/responses.lua claude 0 0
run "responses, claude (translated), stored" /v1/responses bench/responses.lua claude 0 1
run "responses, claude (translated), streamed, stored" /v1/responses bench/responses.lua claude 1 1
