#!/usr/bin/env bash
# Copies public conformance suites into tests/fixtures/conformance/ so that the repo stands alone:
# tests read only the committed copies, never the source folder. Re-run after the source changes,
# then commit the copies.
#
#   bash scripts/import-conformance.sh SOURCE   # the folder holding the suites (the team's shared conformance folder)
#
# One section per suite; each suite's LICENSE is copied beside its files.
set -euo pipefail
cd "$(dirname "$0")/.."

source_root=${1:?usage: import-conformance.sh SOURCE_DIR}
fixtures=tests/fixtures/conformance

# Replaces $fixtures/$2 with a writable copy of $source_root/$1 (the files only, no subfolders
# beyond what is listed).
import_suite_dir() {
  local from="$source_root/$1" to="$fixtures/$2"
  if [ ! -d "$from" ]; then
    echo "import-conformance: $from is missing" >&2
    exit 1
  fi
  rm -rf "$to"
  mkdir -p "$to"
  cp -R "$from/." "$to/"
  chmod -R u+w "$to"
}

# JSONTestSuite (nst/JSONTestSuite, MIT): test_parsing/{y,n,i}_*.json, used by
# tests/conformance_json.rs.
import_suite_dir JSONTestSuite/test_parsing JSONTestSuite/test_parsing
cp "$source_root/JSONTestSuite/LICENSE" "$fixtures/JSONTestSuite/LICENSE"
chmod u+w "$fixtures/JSONTestSuite/LICENSE"
echo "import-conformance: JSONTestSuite: $(ls "$fixtures/JSONTestSuite/test_parsing" | wc -l) files"

# csv-spectrum (max-mapper/csv-spectrum, BSD-2): csvs/*.csv with the expected rows in json/*.json,
# used by tests/conformance_csv.rs.
import_suite_dir csv-spectrum csv-spectrum
echo "import-conformance: csv-spectrum: $(ls "$fixtures/csv-spectrum/csvs" | wc -l) files"
