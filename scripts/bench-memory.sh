#!/usr/bin/env bash
# Memory benchmark: imports a generated multi-GB CSV whose rows carry precomputed vectors (a JSON
# array in the `embedding` column, so the model is skipped and the file streams at Milvus speed)
# and reports peak RSS of vecdrop. Target: < 400 MB whatever the file size.
#
#   scripts/bench-memory.sh [SIZE_GB=2]
#
# Uses $MILVUS_URI, or starts the test Milvus server (scripts/milvus-test-server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_GB="${1:-2}"
WORK="${BENCH_DIR:-target/bench-memory}"
mkdir -p "$WORK"
CSV="$WORK/big-${SIZE_GB}g.csv"

if [ ! -f "$CSV" ]; then
  echo "bench: generating $CSV (${SIZE_GB} GB)"
  .venv/bin/python - "$CSV" "$SIZE_GB" <<'PY'
import random, sys
path, size_gb = sys.argv[1], float(sys.argv[2])
rng = random.Random(1)
pool = []
for _ in range(1000):
    v = [rng.gauss(0, 1) for _ in range(384)]
    n = sum(x * x for x in v) ** 0.5
    pool.append('"[' + ",".join(f"{x / n:.4f}" for x in v) + ']"')
target = int(size_gb * 1024 ** 3)
written = 0
with open(path, "w") as out:
    out.write("id,text,embedding\n")
    i = 0
    while written < target:
        line = f"r{i},\"row {i}: a document about topic {i % 97} with some words\",{pool[i % 1000]}\n"
        out.write(line)
        written += len(line)
        i += 1
print(f"bench: {i} rows, {written / 1024 ** 3:.2f} GB")
PY
fi

source scripts/test-env.sh
cargo build --release --quiet
COLLECTION="bench_memory_$(date +%s)"
cat > "$WORK/vecdrop.toml" <<TOML
[milvus]
uri = "$MILVUS_URI"
[embedding]
model_dir = "$PWD/models/all-MiniLM-L6-v2"
[state]
dir = "state-$COLLECTION"
[[pipelines]]
name = "bench"
collection = "$COLLECTION"
id_field = "id"
batch_rows = 1000
TOML
rows=$(($(wc -l < "$CSV") - 1))
echo "bench: importing $rows rows ($(du -h "$CSV" | cut -f1)) into $COLLECTION"
/usr/bin/time -v ./target/release/vecdrop import --config "$WORK/vecdrop.toml" "$CSV" 2> "$WORK/time.log" >"$WORK/import.log" || { cat "$WORK/import.log" "$WORK/time.log"; exit 1; }
cat "$WORK/import.log"
peak_kb=$(grep "Maximum resident set size" "$WORK/time.log" | awk '{print $NF}')
wall=$(grep "Elapsed (wall clock)" "$WORK/time.log" | awk '{print $NF}')
echo "bench: peak RSS $((peak_kb / 1024)) MB (target < 400 MB), wall $wall"
rm -rf "$WORK/state-$COLLECTION"
[ "$peak_kb" -lt $((400 * 1024)) ]
