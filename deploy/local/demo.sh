#!/usr/bin/env bash
# The whole gateway on this machine, in the foreground: two spokes (separate processes, simulated
# upstream, two accounts) and a hub on 127.0.0.1:${HUB_PORT:-8080}. Ctrl-C or SIGTERM stops all.
#
#   HUB_PORT=8080                 hub port (0 = any free port)
#   DEMO_API_KEY=sk-switchyard-demo   the API key clients send (only its SHA-256 goes in the config)
#   DEMO_ADMIN_KEY=sk-switchyard-demo-admin   the key of /admin/* (routing table, config status)
#   SWITCHYARD_BIN_DIR=...        use prebuilt `hub` and `spoke` from there instead of building
#   CARGO_PROFILE=dev|release     profile to build (default dev)
set -euo pipefail

HUB_PORT="${HUB_PORT:-8080}"
DEMO_API_KEY="${DEMO_API_KEY:-sk-switchyard-demo}"
DEMO_ADMIN_KEY="${DEMO_ADMIN_KEY:-sk-switchyard-demo-admin}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

log() { echo "demo: $*" >&2; }

if [[ -n "${SWITCHYARD_BIN_DIR:-}" ]]; then
  bin="$SWITCHYARD_BIN_DIR"
else
  profile="${CARGO_PROFILE:-dev}"
  log "building hub and spoke ($profile profile; fast when up to date)"
  (cd "$root" && cargo build --quiet --profile "$profile" -p switchyard-hub -p switchyard-spoke --bins)
  if [[ "$profile" == "dev" ]]; then sub=debug; else sub="$profile"; fi
  bin="${CARGO_TARGET_DIR:-$root/target}/$sub"
fi
for b in hub spoke; do
  [[ -x "$bin/$b" ]] || { log "missing binary $bin/$b"; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-demo.XXXXXX")"
pids=()
stopping=0
cleanup() {
  [[ $stopping == 1 ]] && return
  stopping=1
  log "stopping"
  # Hub first (it drains in-flight requests), then the spokes.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

# Waits until $1 (a log file) has a `listening on ADDR` line and prints ADDR.
wait_listening() {
  local file="$1" pid="$2" name="$3"
  for _ in $(seq 1 600); do
    if addr="$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$file" | head -n1)" && [[ -n "$addr" ]]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited; its log:"; cat "$file" >&2; return 1
    fi
    sleep 0.1
  done
  log "$name did not start; its log:"; cat "$file" >&2; return 1
}

# Started in this shell (not in a $(...) subshell) so that cleanup can stop them.
declare -A spoke_pid
for name in a b; do
  NO_COLOR=1 "$bin/spoke" --config "$here/demo-spoke-$name.toml" >"$work/spoke-$name.log" 2>&1 &
  spoke_pid[$name]=$!
  pids+=($!)
done
spoke_a="$(wait_listening "$work/spoke-a.log" "${spoke_pid[a]}" "spoke a")"
log "spoke a (account 000000000001) listening on $spoke_a"
spoke_b="$(wait_listening "$work/spoke-b.log" "${spoke_pid[b]}" "spoke b")"
log "spoke b (account 000000000002) listening on $spoke_b"

key_hash="$(printf %s "$DEMO_API_KEY" | sha256sum | cut -d' ' -f1)"
admin_hash="$(printf %s "$DEMO_ADMIN_KEY" | sha256sum | cut -d' ' -f1)"
sed -e "s/@HUB_PORT@/$HUB_PORT/" -e "s/@API_KEY_SHA256@/$key_hash/" -e "s/@ADMIN_KEY_SHA256@/$admin_hash/" \
    -e "s/@SPOKE_A@/$spoke_a/" -e "s/@SPOKE_B@/$spoke_b/" \
    "$here/hub.toml" >"$work/hub.toml"

NO_COLOR=1 "$bin/hub" --config "$work/hub.toml" >"$work/hub.log" 2>&1 &
hub_pid=$!
pids+=("$hub_pid")
hub_addr="$(wait_listening "$work/hub.log" "$hub_pid" hub)"

cat >&2 <<EOF

Switchyard is up: hub on http://$hub_addr, spokes on $spoke_a and $spoke_b (simulated upstream).

  curl -s http://$hub_addr/v1/chat/completions \\
    -H "Authorization: Bearer $DEMO_API_KEY" -H "Content-Type: application/json" \\
    -d '{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}'

  # with the official SDK (pip install openai), or any OpenAI, Anthropic or Bedrock client:
  python3 -c 'from openai import OpenAI
c = OpenAI(base_url="http://$hub_addr/v1", api_key="$DEMO_API_KEY")
print(c.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello!"}]).choices[0].message.content)'

Routing table: http://$hub_addr/admin/routes.html (any user name, password $DEMO_ADMIN_KEY).
Metrics: http://$hub_addr/metrics. Audit lines (one JSON line per request) print below.

Logs: $work. Ctrl-C stops everything.
EOF
echo "listening on $hub_addr"

# Stream the hub's log until it exits or we are stopped.
tail -n +1 -f "$work/hub.log" --pid "$hub_pid" >&2 &
wait "$hub_pid" || true
