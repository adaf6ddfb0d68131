#!/usr/bin/env bash
# Builds the WASM format plugins (plugins/: example plugins and the sandbox tests' hostile ones)
# for wasm32-wasip2 and copies the components to plugins/target/<name>.wasm.
# Needs the wasm32-wasip2 target: `rustup target add wasm32-wasip2` (scripts/setup.sh does it).
set -euo pipefail
cd "$(dirname "$0")/../plugins"

if ! rustc --print target-list | grep -qx wasm32-wasip2 || ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build-plugins: the wasm32-wasip2 target is missing; run: rustup target add wasm32-wasip2" >&2
  exit 1
fi

cargo build --release --target wasm32-wasip2 --quiet
for crate in xml logline hostile hostile-version; do
  cp "target/wasm32-wasip2/release/vecdrop_plugin_${crate//-/_}.wasm" "target/$crate.wasm"
done
echo "build-plugins: ok ($(cd target && ls ./*.wasm | tr '\n' ' '))"
