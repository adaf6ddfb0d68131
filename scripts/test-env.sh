# Sourced by the test and bench scripts: exports MILVUS_URI (the one given, or a test
# `milvus-server` started now and stopped when the sourcing script exits) and ORT_DYLIB_PATH.
if [ -z "${MILVUS_URI:-}" ]; then
  trap 'bash scripts/milvus-test-server.sh stop' EXIT
  MILVUS_URI=$(bash scripts/milvus-test-server.sh start)
  echo "milvus-server at $MILVUS_URI" >&2
fi
export MILVUS_URI
ORT_DYLIB_PATH=$(bash scripts/ort-library.sh)
export ORT_DYLIB_PATH
