#!/usr/bin/env bash
# Runs the whole suite against a real Milvus: one `milvus-server` for the whole run (unless
# MILVUS_URI points at one already), stopped at the end whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/test-env.sh

# A test build needs about 4 GB in target/; say how much there is, for when a build dies of it.
echo "disk before the test build: $(df -h --output=avail . | tail -1 | tr -d ' ') free" >&2
cargo test --all-targets --features failpoints --no-fail-fast -- --test-threads=2
# The example plugins' own parsing tests, natively (the plugin workspace is separate).
cargo test --manifest-path plugins/Cargo.toml -p vecdrop-plugin-xml -p vecdrop-plugin-logline
