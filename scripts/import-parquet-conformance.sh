#!/usr/bin/env bash
# Copies the Apache parquet-testing files that tests/conformance_parquet.rs runs through the
# Parquet reader into tests/fixtures/conformance/parquet-testing/, so the repository stands alone.
#
#   import-parquet-conformance.sh [SOURCE]
#
# SOURCE is a parquet-testing checkout (for example the parquet-testing folder of the team's
# shared copy). Only Parquet files are copied (*.parquet, *.parquet.encrypted), from data/ (with
# its subfolders) and bad_data/; files larger than MAX_FILE_BYTES (default 256 KiB) are skipped
# to keep the repository small, and listed so that README.md can name them. Run it again to
# refresh the copies; it rewrites the data/ and bad_data/ folders, not README.md or LICENSE.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE="${1:?usage: import-parquet-conformance.sh PARQUET_TESTING_DIR}"
TARGET=tests/fixtures/conformance/parquet-testing
MAX_FILE_BYTES="${MAX_FILE_BYTES:-262144}"

if [ ! -d "$SOURCE/data" ] || [ ! -d "$SOURCE/bad_data" ]; then
  echo "$SOURCE is not a parquet-testing checkout (no data/ and bad_data/)" >&2
  exit 1
fi

rm -rf "$TARGET/data" "$TARGET/bad_data"
mkdir -p "$TARGET"
cp "$SOURCE/LICENSE.txt" "$TARGET/LICENSE.txt"
copied=0
skipped=0
while IFS= read -r -d '' file; do
  relative="${file#"$SOURCE"/}"
  size=$(stat -c %s "$file")
  if [ "$size" -gt "$MAX_FILE_BYTES" ]; then
    echo "skipped (${size} bytes > ${MAX_FILE_BYTES}): $relative"
    skipped=$((skipped + 1))
    continue
  fi
  mkdir -p "$TARGET/$(dirname "$relative")"
  cp "$file" "$TARGET/$relative"
  chmod 644 "$TARGET/$relative"
  copied=$((copied + 1))
done < <(find "$SOURCE/data" "$SOURCE/bad_data" -type f \( -name '*.parquet' -o -name '*.parquet.encrypted' \) -print0 | sort -z)
echo "copied $copied files, skipped $skipped; total $(du -sh "$TARGET" | cut -f1)"
