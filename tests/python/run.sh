#!/usr/bin/env bash
# The official `openai`, `anthropic` and `boto3` Python SDKs and the OpenAI Agents SDK against the local demo
# (deploy/local/demo.sh on a free port), then the official OpenAI Node SDK (tests/node, `node --test`).
# Creates tests/python/.venv, installs `openai`, `openai-agents`, `anthropic`, `boto3`, `jsonschema` and `pytest`
# from PyPI, runs test_*.py; installs tests/node's locked packages from the npm registry (`npm ci`).
#   SWITCHYARD_BIN_DIR=...   prebuilt hub/spoke (else demo.sh builds them)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# scripts/test passes its shared venv (SWITCHYARD_VENV); standalone runs make their own.
venv="${SWITCHYARD_VENV:-$here/.venv}"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check openai openai-agents anthropic pytest boto3 jsonschema

out="$(mktemp)"
export DEMO_API_KEY="sk-python-sdk-test"
HUB_PORT=0 setsid "$root/deploy/local/demo.sh" >"$out" 2>"$out.err" &
demo=$!
stop() {
  kill -TERM "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -f "$out" "$out.err"
}
trap stop EXIT

addr=""
for _ in $(seq 1 1200); do
  addr="$(sed -n 's/^listening on //p' "$out" | head -n1)"
  [[ -n "$addr" ]] && break
  kill -0 "$demo" 2>/dev/null || { cat "$out.err" >&2; echo "demo exited" >&2; exit 1; }
  sleep 0.25
done
[[ -n "$addr" ]] || { cat "$out.err" >&2; echo "demo did not start" >&2; exit 1; }

export SWITCHYARD_BASE_URL="http://$addr/v1"
export SWITCHYARD_API_KEY="$DEMO_API_KEY"
# Wait until the hub has a healthy spoke.
for _ in $(seq 1 100); do
  curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
py=0
"$venv/bin/python" -m pytest -q "$here" "$@" || py=$?

# The OpenAI Node SDK (its version pinned by tests/node/package-lock.json), against the same
# demo; run whatever the Python tests gave, and fail if either failed.
npm ci --prefix "$root/tests/node" --no-audit --no-fund --loglevel=error
(cd "$root/tests/node" && node --test)
exit "$py"
