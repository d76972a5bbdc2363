"""The configs the deployment code hands to the binaries are valid: the Terraform example's
templates (rendered here with a small subset of Terraform's template language), the Kubernetes
configs, and the container entrypoint that turns SWITCHYARD_CONFIG_TOML into a file.

Where the workspace binaries are built (scripts/test builds them first), each config is also
checked by the binary itself with `--check`; otherwise those parts are skipped."""

from __future__ import annotations

import json
import os
import pathlib
import re
import stat
import subprocess
import tomllib

import pytest

from conftest import DOCKER, EXAMPLES, K8S, MODULES, ROOT

TEMPLATES = EXAMPLES / "multi-account" / "templates"


# ---------------------------------------------------------------------------------------------
# A tiny renderer for the template features the example uses: ${name}, ${a.b},
# ${jsonencode(x)}, and %{ for x in list ~} ... %{ endfor ~} (with ~ strip markers).

DIRECTIVE = re.compile(r"%\{(~?)\s*(for\s+(\w+)\s+in\s+(\w+)|endfor)\s*(~?)\}")
INTERP = re.compile(r"\$\{([^}]*)\}")


def _value(expr: str, scope: dict):
    expr = expr.strip()
    m = re.fullmatch(r"jsonencode\((.*)\)", expr)
    if m:
        return json.dumps(_value(m.group(1), scope), separators=(",", ":"))
    value = scope
    for part in expr.split("."):
        value = value[part]
    return value


def _interpolate(text: str, scope: dict) -> str:
    return INTERP.sub(lambda m: str(_value(m.group(1), scope)), text)


def render(template: str, scope: dict) -> str:
    out, pos = [], 0
    while True:
        m = DIRECTIVE.search(template, pos)
        if not m:
            out.append(_interpolate(template[pos:], scope))
            return "".join(out)
        before = template[pos : m.start()]
        if m.group(1):
            before = before.rstrip()
        out.append(_interpolate(before, scope))
        assert m.group(2).startswith("for"), "unbalanced endfor"
        # find the matching endfor
        depth, scan = 1, m.end()
        while depth:
            n = DIRECTIVE.search(template, scan)
            assert n, "missing endfor"
            depth += 1 if n.group(2).startswith("for") else -1
            scan = n.end()
        end = n
        body = template[m.end() : end.start()]
        if m.group(5):
            body = body.lstrip()
        if end.group(1):
            body = body.rstrip(" \t")
        for item in scope[m.group(4)]:
            out.append(render(body, {**scope, m.group(3): item}))
        pos = end.end()
        if end.group(5):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())


MODELS = [
    {
        "id": "claude-haiku",
        "upstream_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "regions": ["us-east-1", "us-west-2"],
        "context_window": 200000,
        "requests_per_minute": 400,
        "tokens_per_minute": 300000,
    },
    {
        "id": "claude-sonnet",
        "upstream_id": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "regions": ["us-east-1"],
        "context_window": 200000,
        "requests_per_minute": 100,
        "tokens_per_minute": 100000,
    },
]


def provider_pool_toml(name="bedrock", zone="spokes.internal", ttl=10) -> str:
    """The provider_pool module's hub_provider_toml heredoc, rendered."""
    text = (MODULES / "provider_pool" / "outputs.tf").read_text()
    body = re.search(r"<<-EOT\n(.*?)\n\s*EOT", text, re.S).group(1)
    lines = body.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    body = "\n".join(line[indent:] for line in lines) + "\n"
    srv = f"_grpc._tcp.{name}.{zone}"
    return (
        body.replace("${var.name}", name)
        .replace("${local.srv_name}", srv)
        .replace("${var.ttl}", str(ttl))
        .replace("${var.connections_per_address}", "4")
    )


def provider_pool_weighted_toml(name="bedrock", zone="spokes.internal", ttl=10, port=50051) -> str:
    """The provider_pool module's hub_provider_toml_weighted heredoc, rendered."""
    text = (MODULES / "provider_pool" / "outputs.tf").read_text()
    output = text[text.index('output "hub_provider_toml_weighted"') :]
    body = re.search(r"<<-EOT\n(.*?)\n\s*EOT", output, re.S).group(1)
    lines = body.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    body = "\n".join(line[indent:] for line in lines) + "\n"
    return (
        body.replace("${var.name}", name)
        .replace("${local.fqdn}", f"{name}.{zone}")
        .replace("${var.ttl}", str(ttl))
        .replace("${var.port}", str(port))
    )


def rendered_spoke() -> str:
    regions = list(dict.fromkeys(r for m in MODELS for r in m["regions"]))
    return render(
        (TEMPLATES / "spoke-bedrock.toml.tftpl").read_text(),
        {
            "account_id": "222222222222",
            "port": 50051,
            "drain_timeout_seconds": 30,
            "max_connection_age_seconds": 30,
            "regions": regions,
            "models": MODELS,
        },
    )


def rendered_hub() -> str:
    return render(
        (TEMPLATES / "hub.toml.tftpl").read_text(),
        {
            "drain_timeout_seconds": 60,
            "api_key_sha256": ["e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f"],
            "models": MODELS,
            "providers_toml": provider_pool_toml(),
        },
    )


# ---------------------------------------------------------------------------------------------
# Binaries (optional)


def binary(name: str) -> pathlib.Path | None:
    dirs = [os.environ.get("SWITCHYARD_BIN_DIR"), ROOT / "target" / "debug", ROOT / "target" / "release"]
    for d in dirs:
        if d and (pathlib.Path(d) / name).is_file():
            return pathlib.Path(d) / name
    return None


def check_with_binary(name: str, text: str, tmp_path: pathlib.Path):
    exe = binary(name)
    if exe is None:
        pytest.skip(f"{name} binary not built (cargo build --bins, or set SWITCHYARD_BIN_DIR)")
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    run = subprocess.run([str(exe), "--check", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{name} --check rejected the config:\n{run.stderr}\n---\n{text}"


# ---------------------------------------------------------------------------------------------
# Terraform example configs


def test_spoke_template_renders_valid_toml():
    doc = tomllib.loads(rendered_spoke())
    assert doc["listen"] == "0.0.0.0:50051"
    assert doc["provider"] == "bedrock"
    assert doc["drain_timeout"] == "30s"
    assert doc["max_connection_age"] == "30s"
    assert [r["name"] for r in doc["regions"]] == ["us-east-1", "us-west-2"]
    assert doc["models"][1]["regions"] == ["us-east-1"]


def test_hub_template_renders_valid_toml_with_the_srv_pool():
    doc = tomllib.loads(rendered_hub())
    assert doc["listen"] == "0.0.0.0:8080"
    (pool,) = doc["providers"]
    assert pool == {
        "name": "bedrock",
        "dns": "_grpc._tcp.bedrock.spokes.internal",
        "dns_record": "srv",
        "dns_max_ttl": "10s",
        "health": {"interval": "5s", "timeout": "2s", "healthy_threshold": 2, "unhealthy_threshold": 2},
        "connections": 4,
    }
    chat = next(a for a in doc["aliases"] if a["name"] == "chat-default")
    assert [c["model"] for c in chat["candidates"]] == ["claude-haiku", "claude-sonnet"]


def test_weighted_pool_output_renders_a_weighted_provider():
    (pool,) = tomllib.loads(provider_pool_weighted_toml())["providers"]
    assert pool == {
        "name": "bedrock",
        "dns": "bedrock.spokes.internal",
        "dns_record": "weighted",
        "dns_port": 50051,
        "dns_max_ttl": "10s",
        "health": {"interval": "5s", "timeout": "2s", "healthy_threshold": 2, "unhealthy_threshold": 2},
    }


def test_hub_binary_accepts_the_weighted_pool_output(tmp_path):
    hub = rendered_hub().replace(provider_pool_toml(), provider_pool_weighted_toml())
    assert 'dns_record = "weighted"' in hub
    check_with_binary("hub", hub, tmp_path)


def test_spoke_binary_accepts_the_rendered_spoke_config(tmp_path):
    check_with_binary("spoke", rendered_spoke(), tmp_path)


def test_hub_binary_accepts_the_rendered_hub_config(tmp_path):
    check_with_binary("hub", rendered_hub(), tmp_path)


# ---------------------------------------------------------------------------------------------
# Kubernetes configs


def test_k8s_configs_parse_and_listen_on_all_interfaces():
    spoke = tomllib.loads((K8S / "spoke.toml").read_text())
    hub = tomllib.loads((K8S / "hub.example.toml").read_text())
    assert spoke["listen"] == "0.0.0.0:50051"
    assert hub["listen"] == "0.0.0.0:8080"
    assert hub["providers"][0]["dns"] == "switchyard-spoke.switchyard.svc.cluster.local"


def test_spoke_binary_accepts_the_k8s_spoke_config(tmp_path):
    check_with_binary("spoke", (K8S / "spoke.toml").read_text(), tmp_path)


def test_hub_binary_accepts_the_k8s_hub_config(tmp_path):
    check_with_binary("hub", (K8S / "hub.example.toml").read_text(), tmp_path)


# ---------------------------------------------------------------------------------------------
# Container entrypoint


ENTRYPOINT = DOCKER / "entrypoint.sh"


def test_entrypoint_is_an_executable_posix_script():
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "set -eu" in text and "unset SWITCHYARD_CONFIG_TOML" in text
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)


def test_entrypoint_writes_the_config_privately_and_execs_the_binary(tmp_path):
    bindir, rundir = tmp_path / "bin", tmp_path / "run"
    bindir.mkdir()
    rundir.mkdir()
    fake = bindir / "spoke"
    fake.write_text('#!/bin/sh\necho "args=$*"\necho "cfg=$SWITCHYARD_SPOKE_CONFIG"\necho "raw=${SWITCHYARD_CONFIG_TOML:-unset}"\n')
    fake.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SWITCHYARD_CONFIG_TOML": 'listen = "0.0.0.0:50051"',
        "SWITCHYARD_BIN_DIR": str(bindir),
        "SWITCHYARD_RUN_DIR": str(rundir),
    }
    run = subprocess.run(["sh", str(ENTRYPOINT), "spoke", "--check"], env=env, capture_output=True, text=True, check=True)
    cfg = rundir / "config.toml"
    assert run.stdout.splitlines() == ["args=--check", f"cfg={cfg}", "raw=unset"]
    assert cfg.read_text() == 'listen = "0.0.0.0:50051"\n'
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_entrypoint_fails_clearly_without_a_writable_run_dir(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SWITCHYARD_CONFIG_TOML": "x = 1",
        "SWITCHYARD_RUN_DIR": str(tmp_path / "missing"),
    }
    run = subprocess.run(["sh", str(ENTRYPOINT), "hub"], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert "mount a writable volume" in run.stderr


def test_entrypoint_with_the_real_spoke_binary(tmp_path):
    exe = binary("spoke")
    if exe is None:
        pytest.skip("spoke binary not built")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SWITCHYARD_CONFIG_TOML": (K8S / "spoke.toml").read_text(),
        "SWITCHYARD_BIN_DIR": str(exe.parent),
        "SWITCHYARD_RUN_DIR": str(tmp_path),
    }
    run = subprocess.run(["sh", str(ENTRYPOINT), "spoke", "--check"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
