"""Shared helpers for the static infrastructure checks (tests/infra/check.sh runs them)."""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
EXAMPLES = TERRAFORM / "examples"
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"


def tf_files() -> list[pathlib.Path]:
    """Every .tf file under terraform/ (no .terraform caches)."""
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


def tf_dirs() -> list[pathlib.Path]:
    """Every Terraform configuration directory: the modules and the examples."""
    return sorted({p.parent for p in tf_files()})


def unq(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels: '"x"' -> 'x'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


@functools.lru_cache(maxsize=None)
def parse(path: pathlib.Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f)


def blocks(directory: pathlib.Path, kind: str) -> list[tuple[pathlib.Path, str, dict[str, Any]]]:
    """All `kind` blocks with one label (variable, module, output) in a directory."""
    out = []
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get(kind, []):
            for label, body in entry.items():
                out.append((path, unq(label), body))
    return out


def resources(directory: pathlib.Path, rtype: str) -> dict[str, dict[str, Any]]:
    """name -> body of every `resource "rtype" "name"` in a directory."""
    out = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("resource", []):
            for t, named in entry.items():
                if unq(t) != rtype:
                    continue
                for name, body in named.items():
                    out[unq(name)] = body
    return out


def variables(directory: pathlib.Path) -> dict[str, dict[str, Any]]:
    return {name: body for _, name, body in blocks(directory, "variable")}


def first(value: Any) -> Any:
    """Nested blocks come as lists of dicts; most appear once."""
    if isinstance(value, list):
        assert len(value) == 1, value
        return value[0]
    return value
