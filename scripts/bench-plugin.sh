#!/usr/bin/env bash
# Plugin overhead benchmark: the log-line WASM plugin vs the built-in CSV reader on the same
# CSV-like rows (rows/s through the reader, no Milvus, no model). Usage: bench-plugin.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
cargo run --release --quiet --example plugin_overhead -- "${1:-500000}"
