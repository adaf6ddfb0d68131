#!/usr/bin/env bash
# Prints the path of the ONNX Runtime shared library from the .venv's onnxruntime wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n1 || true)
if [ -z "$lib" ]; then
  echo "ONNX Runtime not found in .venv; run 'make setup'" >&2
  exit 1
fi
realpath "$lib"
