#!/usr/bin/env bash
# vecdrop against the Python batch-import script it replaces (scripts/baseline_import.py: pandas,
# batches of 32, pymilvus upserts, a JSON checkpoint, tqdm, a closing flush), on the same CSV of
# generated rows and the same Milvus server, each into a fresh collection. Both run three times,
# alternating; the table gives every run and the ratios of the best runs:
#   - whole process: wall-clock seconds from exec to exit;
#   - after start-up: rows/s from the first batch sent to the model until the end (each tool
#     reports when that was: `vecdrop import` in its start-up line, the script in its JSON);
#   - the same without each tool's closing flush (both report its length), for information:
#     Milvus 2.3 completes a flush ~2 s after the last write, whoever wrote.
#
#   scripts/bench-vs-script.sh [ROWS]      # default 3000
#
# Uses $MILVUS_URI, or starts the test Milvus server and stops it afterwards. Needs `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
given_uri=${MILVUS_URI:-}
source scripts/test-env.sh
rows=${1:-3000}
cargo build --release --quiet
work=$(mktemp -d)
# (Replaces test-env.sh's trap: stop the server only if it was started here.)
trap 'rm -rf "$work"; [ -n "$given_uri" ] || bash scripts/milvus-test-server.sh stop' EXIT
.venv/bin/python scripts/gen_seed_csv.py "$work/rows.csv" "$rows"
run_id=$$_$(date +%s)

vecdrop_run() {
  local collection="vs_vecdrop_${run_id}_$1" config="$work/vecdrop-$1.toml"
  cat > "$config" <<TOML
[milvus]
uri = "$MILVUS_URI"
[embedding]
model_dir = "$PWD/models/all-MiniLM-L6-v2"
[state]
dir = "$work/state-$1"
[[pipelines]]
name = "rows"
collection = "$collection"
id_field = "id"
after_import = "keep"
index = { index_type = "FLAT", metric = "COSINE" }
[pipelines.fields]
category = { type = "varchar", max_length = 256 }
TOML
  # The batch shape is measured once per host and model; keep it out of the timed run, as a
  # daemon or a second import would.
  ./target/release/vecdrop check --config "$config" >/dev/null || true
  local started ended output
  started=$(date +%s.%N)
  output=$(./target/release/vecdrop import --config "$config" "$work/rows.csv" 2>"$work/vecdrop-$1.log")
  ended=$(date +%s.%N)
  .venv/bin/python - "$started" "$ended" "$rows" "$output" <<'PY'
import json, re, sys
started, ended, rows, output = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
startup = float(re.search(r"start-up: ([0-9.]+) s from start to the first model batch", output).group(1))
flushed = re.search(r"of which the closing Milvus flush ([0-9.]+) s", output)
flush = float(flushed.group(1)) if flushed else 0.0  # no line: nothing was flushed
whole = ended - started
print(json.dumps({"tool": "vecdrop", "rows": rows, "seconds": round(whole, 2), "startup_seconds": startup,
                  "rows_per_second_after_startup": round(rows / (whole - startup), 2), "flush_seconds": flush}))
PY
}

script_run() {
  local started ended output
  started=$(date +%s.%N)
  output=$(.venv/bin/python scripts/baseline_import.py "$work/rows.csv" --uri "$MILVUS_URI" \
    --collection "vs_script_${run_id}_$1" --checkpoint "$work/checkpoint-$1.json" 2>/dev/null)
  ended=$(date +%s.%N)
  .venv/bin/python - "$started" "$ended" "$output" <<'PY'
import json, sys
started, ended, report = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
whole = ended - started
# The script measures start-up from its first line; add the interpreter's own start before it.
startup = report["startup_seconds"] + (whole - report["seconds"])
print(json.dumps({"tool": "script", "rows": report["rows"], "seconds": round(whole, 2), "startup_seconds": round(startup, 2),
                  "rows_per_second_after_startup": report["rows_per_second_after_startup"],
                  "flush_seconds": report["flush_seconds"]}))
PY
}

echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for round in 1 2 3; do
  results+=("$(script_run "$round")")
  results+=("$(vecdrop_run "$round")")
done
printf '%s\n' "${results[@]}" > "$work/results.jsonl"
.venv/bin/python - "$work/results.jsonl" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
for run in runs:
    # The same rows/s with the closing flush taken out: Milvus 2.3 completes a flush ~2 s after
    # the last write whoever wrote, so on a fast host the flush is a large, equal share of both.
    after = run["rows"] / run["rows_per_second_after_startup"]
    run["rows_per_second_without_flush"] = run["rows"] / max(after - run["flush_seconds"], 1e-9)
    print(f"{run['tool']:8} {run['rows']} rows: {run['seconds']:.2f} s whole, start-up {run['startup_seconds']:.2f} s, "
          f"{run['rows_per_second_after_startup']:.1f} rows/s after start-up, closing flush {run['flush_seconds']:.2f} s "
          f"({run['rows_per_second_without_flush']:.1f} rows/s without it)")
best = lambda tool, key, pick: pick(run[key] for run in runs if run["tool"] == tool)
whole = best("script", "seconds", min) / best("vecdrop", "seconds", min)
after = best("vecdrop", "rows_per_second_after_startup", max) / best("script", "rows_per_second_after_startup", max)
without_flush = best("vecdrop", "rows_per_second_without_flush", max) / best("script", "rows_per_second_without_flush", max)
print(f"vecdrop / script (best runs): whole process {whole:.2f}x faster, after start-up {after:.2f}x the rate (target >= 1.1); "
      f"without the closing flush {without_flush:.2f}x")
PY
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
