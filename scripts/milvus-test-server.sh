#!/usr/bin/env bash
# The real Milvus standalone (PyPI `milvus` 2.3.5, `milvus-server`) for tests and benchmarks.
#
#   milvus-test-server.sh start [--watch PID]   start on a free loopback port, print its URI
#   milvus-test-server.sh stop                  stop it (the whole process group)
#
# The server binds etcd's ports (2379/2380) whatever its flags say, so only one can run per
# machine: `start` waits for a previous one to release them. Killing the Python wrapper leaves the
# `milvus` binary running, so it runs in its own process group and `stop` signals the group.
# With --watch PID a watchdog stops the server when PID exits (used by test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${VECDROP_MILVUS_RUN_DIR:-$PWD/target/milvus-test}"
SERVER=.venv/bin/milvus-server
PY=.venv/bin/python

port_busy() { "$PY" - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); print("busy")
except OSError:
    print("free")
PY
}

stop() {
  if [ -f "$RUN_DIR/pgid" ]; then
    local pgid; pgid=$(cat "$RUN_DIR/pgid")
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$RUN_DIR/pgid" "$RUN_DIR/uri"
  fi
  # data directories of servers no longer running (a watchdog removes its own on exit)
  for data in "$RUN_DIR"/data.*; do
    [ -d "$data" ] && ! pgrep -f -- "--data $data" >/dev/null && rm -rf "$data"
  done
  return 0
}

start() {
  local watch=""
  if [ "${1:-}" = "--watch" ]; then watch="$2"; fi
  [ -x "$SERVER" ] || { echo "milvus-server not found in .venv; run 'make setup' (pip install milvus==2.3.5)" >&2; exit 1; }
  mkdir -p "$RUN_DIR"
  stop
  for _ in $(seq 1 150); do
    [ "$(port_busy 2380)" = free ] && [ "$(port_busy 2379)" = free ] && break
    sleep 0.2
  done
  if [ "$(port_busy 2380)" = busy ]; then
    echo "port 2380 (etcd) is taken by another process: another Milvus runs on this machine; stop it or set MILVUS_URI to use it" >&2
    exit 1
  fi
  local port; port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local data; data=$(mktemp -d "$RUN_DIR/data.XXXXXX")
  setsid "$SERVER" --data "$data" --proxy-port "$port" >"$RUN_DIR/server.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$RUN_DIR/pgid"
  for _ in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "milvus-server exited at start-up; see $RUN_DIR/server.log" >&2; tail -20 "$RUN_DIR/server.log" >&2; exit 1
    fi
    [ "$(port_busy "$port")" = busy ] && break
    sleep 0.2
  done
  echo "http://127.0.0.1:$port" >"$RUN_DIR/uri"
  if [ -n "$watch" ]; then
    ( trap '' HUP; while kill -0 "$watch" 2>/dev/null; do sleep 0.5; done; kill -TERM -- "-$pid" 2>/dev/null; sleep 5; kill -KILL -- "-$pid" 2>/dev/null; rm -rf "$data" ) >/dev/null 2>&1 </dev/null &
    disown
  fi
  echo "http://127.0.0.1:$port"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start [--watch PID] | stop" >&2; exit 2 ;;
esac
