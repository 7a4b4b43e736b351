# Shared by bench/run.sh and bench/cache.sh (sourced from the repository root): the binary, the
# pinning, the simulator and a gateway in front of it, and the CPU-time reading.
#   BENCH_BIN      an already built binary (skips the build)
#   BENCH_PROFILE  the build profile (default bench-release)
#   BENCH_PIN=1    gateway on CPU 1, wrk and the simulator on CPU 0 (steadier on 2 cores)

THREADS=2
PROFILE="${BENCH_PROFILE:-bench-release}"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --profile "$PROFILE" --bin plexus
  BIN="target/$PROFILE/plexus"
fi

cleanup() { kill "${GW_PID:-}" "${MOCK_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

PIN_LOAD=""
PIN_GW=""
if [ "${BENCH_PIN:-0}" = 1 ]; then
  PIN_LOAD="taskset -c 0"
  PIN_GW="taskset -c 1"
  THREADS=1
fi

# Starts the simulator on :4010 and the gateway with config $1 on :4000, and waits for it.
start_servers() {
  rm -f bench/plexus-bench.db*
  PLEXUS_LOG=warn $PIN_LOAD "$BIN" mock --listen 127.0.0.1:4010 >/dev/null &
  MOCK_PID=$!
  PLEXUS_LOG=warn $PIN_GW "$BIN" serve --config "$1" >/dev/null &
  GW_PID=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:4000/health >/dev/null && return
    sleep 0.1
  done
  echo "gateway did not start" >&2
  exit 1
}

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
