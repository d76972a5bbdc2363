#!/bin/sh
# Container entrypoint for the hub and spoke images: `switchyard-entrypoint BINARY [ARGS...]`.
#
# The binaries read their config from a file (--config, or SWITCHYARD_HUB_CONFIG /
# SWITCHYARD_SPOKE_CONFIG). Platforms without config files (ECS) pass the TOML itself in
# SWITCHYARD_CONFIG_TOML (the hub's from Secrets Manager): it is written to
# /run/switchyard/config.toml (mode 600) and removed from the environment before exec.
# Kubernetes mounts the file instead and leaves SWITCHYARD_CONFIG_TOML unset.
set -eu

bin="${1:?usage: switchyard-entrypoint hub|spoke [args...]}"
shift

if [ -n "${SWITCHYARD_CONFIG_TOML:-}" ]; then
  dir="${SWITCHYARD_RUN_DIR:-/run/switchyard}"
  file="$dir/config.toml"
  umask 077
  if ! printf '%s\n' "$SWITCHYARD_CONFIG_TOML" > "$file" 2>/dev/null; then
    echo "switchyard-entrypoint: cannot write $file: mount a writable volume there" >&2
    exit 1
  fi
  unset SWITCHYARD_CONFIG_TOML
  case "$bin" in
    hub) export SWITCHYARD_HUB_CONFIG="$file" ;;
    spoke) export SWITCHYARD_SPOKE_CONFIG="$file" ;;
  esac
fi

# SWITCHYARD_BIN_DIR: where the binaries are (tests point it elsewhere).
exec "${SWITCHYARD_BIN_DIR:-/usr/local/bin}/$bin" "$@"
