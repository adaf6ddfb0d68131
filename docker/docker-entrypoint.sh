#!/bin/sh
# The vecdrop image's entrypoint: prepares the volumes and the status token, then replaces itself
# with vecdrop (exec: vecdrop is the container's main process and gets SIGTERM from `docker stop`).
#
#   docker run IMAGE                  -> vecdrop run --config /etc/vecdrop/vecdrop.toml
#   docker run IMAGE check            -> vecdrop check --config /etc/vecdrop/vecdrop.toml
#   docker run IMAGE import F.csv     -> vecdrop import --config /etc/vecdrop/vecdrop.toml F.csv
#   docker run IMAGE --version        -> vecdrop --version
#   docker run IMAGE sh               -> sh (anything that is not a vecdrop command runs as given)
#
# Before a vecdrop command it
#   - creates the state and drop folders when missing and stops (exit 2, like a vecdrop config
#     error) when one is not writable by the container's user, saying how to fix it;
#   - creates the status token file (64 hex digits, mode 0600) when none exists: the image's config
#     listens on 0.0.0.0:9464, which vecdrop refuses without status.token_file. An existing file
#     (mounted or generated before) is kept as it is.
#
# Paths can be changed through the environment (the tests run it in a temporary root that way):
#   VECDROP_BIN                  /usr/local/bin/vecdrop
#   VECDROP_CONFIG               /etc/vecdrop/vecdrop.toml (also read by vecdrop itself)
#   VECDROP_STATE_DIR            /var/lib/vecdrop
#   VECDROP_DROP_DIR             /data/drop
#   VECDROP__STATUS__TOKEN_FILE  $VECDROP_STATE_DIR/status-token (vecdrop's status.token_file)
set -eu

: "${VECDROP_BIN:=/usr/local/bin/vecdrop}"
: "${VECDROP_CONFIG:=/etc/vecdrop/vecdrop.toml}"
: "${VECDROP_STATE_DIR:=/var/lib/vecdrop}"
: "${VECDROP_DROP_DIR:=/data/drop}"
: "${VECDROP__STATUS__TOKEN_FILE:=$VECDROP_STATE_DIR/status-token}"
export VECDROP_CONFIG VECDROP__STATUS__TOKEN_FILE

say() {
  echo "docker-entrypoint: $*" >&2
}

if [ "$#" -eq 0 ]; then
  set -- run
fi

# Not a vecdrop command (and not an option of vecdrop's): run it as given.
case $1 in
  run | check | import | status | search | bench | plugin | help | -*) ;;
  *) exec "$@" ;;
esac

# What vecdrop writes is its own (as the systemd unit's UMask=0077).
umask 077

for dir in "$VECDROP_STATE_DIR" "$VECDROP_DROP_DIR"; do
  if ! mkdir -p "$dir" 2>/dev/null || [ ! -d "$dir" ]; then
    say "cannot create $dir as uid $(id -u)"
    exit 2
  fi
  if [ ! -w "$dir" ] || [ ! -x "$dir" ]; then
    say "$dir is not writable by uid $(id -u) (gid $(id -g)): give it to that user, e.g." \
      "'sudo chown $(id -u):$(id -g) DIR' for a bind-mounted host folder"
    exit 2
  fi
done

token_file=$VECDROP__STATUS__TOKEN_FILE
if [ ! -e "$token_file" ] && [ ! -L "$token_file" ]; then
  token_dir=$(dirname "$token_file")
  mkdir -p "$token_dir"
  partial="$token_dir/.status-token.$$"
  # 32 random bytes as hex: one word of printable ASCII, as vecdrop wants.
  token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  if [ "${#token}" -ne 64 ]; then
    say "could not read 32 random bytes from /dev/urandom"
    exit 1
  fi
  printf '%s\n' "$token" >"$partial"
  chmod 600 "$partial"
  mv "$partial" "$token_file"
  say "created the status token $token_file (/status needs 'Authorization: Bearer <its content>')"
fi

# Commands that read the config get it explicitly unless they were given one.
case $1 in
  run | check | import | status | search | bench)
    command=$1
    shift
    for arg in "$@"; do
      case $arg in
        --config | --config=*) exec "$VECDROP_BIN" "$command" "$@" ;;
      esac
    done
    exec "$VECDROP_BIN" "$command" --config "$VECDROP_CONFIG" "$@"
    ;;
esac
exec "$VECDROP_BIN" "$@"
