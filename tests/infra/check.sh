#!/usr/bin/env bash
# Static checks of the deployment code; no Terraform binary, Docker engine or cluster needed:
#   - every .tf file parses (python-hcl2); every variable has a description and a type; every
#     input a module call passes exists and every required input is passed; the modules hold
#     what the deployment issue asks (NLB static IPs, /healthz checks, weighted records, WAF...)
#   - checkov on terraform/ and deploy/ (each skip carries its reason inline)
#   - the configs the deployment hands to the binaries render and parse (and pass
#     `hub/spoke --check` when the binaries are built), and the image entrypoint works
#   - Dockerfiles: multi-stage, non-root USER, HEALTHCHECK, no secrets baked in
#   - Kubernetes: probes, HPA, PDB, graceful termination
#
#   tests/infra/check.sh [pytest args]
#
# The Python tools live in venvs under tests/infra/.venv/ (gitignored), made on first run and
# reused while the requirements files are unchanged. checkov gets its own venv: it pins a fork
# of the HCL parser that installs the same `hcl2` module as python-hcl2.
set -euo pipefail
cd "$(dirname "$0")/../.."

venvs=tests/infra/.venv
python=${PYTHON:-python3}

ensure_venv() { # DIR REQUIREMENTS
  local dir=$1 req=$2 stamp want
  stamp="$dir/.requirements.sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  echo "== tests/infra: installing $(basename "$req") into $dir"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
}

ensure_venv "$venvs/main" tests/infra/requirements.txt
ensure_venv "$venvs/checkov" tests/infra/requirements-checkov.txt

export SWITCHYARD_CHECKOV="$PWD/$venvs/checkov/bin/checkov"
export SWITCHYARD_REQUIRE_CHECKOV=1
echo "== tests/infra: static checks of terraform/, deploy/docker/, deploy/k8s/"
exec "$venvs/main/bin/python" -m pytest tests/infra -q -p no:cacheprovider -rs "$@"
