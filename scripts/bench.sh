#!/usr/bin/env bash
# Full-mode throughput bench (issue #6): a release build of `vecdrop bench`, its table on stdout
# and its JSON report in target/bench/bench-<time>.json. Extra arguments go to `vecdrop bench`
# (e.g. --rows 20000, --json).
#
#   scripts/bench.sh [vecdrop bench options]
#
# Uses $MILVUS_URI, or starts the test Milvus server (scripts/milvus-test-server.sh) and stops it
# afterwards. Timings are only as good as the machine is quiet: the load average is printed with
# the table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-env.sh
cargo build --release --quiet
mkdir -p target/bench
json="target/bench/bench-$(date -u +%Y%m%dT%H%M%SZ).json"
./target/release/vecdrop bench --json-out "$json" "$@"
echo "bench: JSON report in $json"
# The targets are checked here, on the full report: a missed one fails the script (the smoke
# test in `make test` only checks that every phase is measured).
.venv/bin/python - "$json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
missed = [target["name"] for target in report["targets"] if not target["met"]]
print("bench: every target met" if not missed else f"bench: targets missed: {missed}")
sys.exit(1 if missed else 0)
PY
