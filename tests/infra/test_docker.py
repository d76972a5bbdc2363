"""Static checks of deploy/docker/Dockerfile.{hub,spoke} and .dockerignore (no Docker engine
here): multi-stage build, non-root runtime user, HEALTHCHECK, nothing secret baked in."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import DOCKER, ROOT

DOCKERFILES = {"hub": DOCKER / "Dockerfile.hub", "spoke": DOCKER / "Dockerfile.spoke"}
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def instructions(path):
    """[(INSTRUCTION, argument text)] with comments dropped and continuations joined."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(path):
    """Instructions grouped by FROM."""
    result = []
    for word, rest in instructions(path):
        if word == "FROM":
            result.append([(word, rest)])
        elif result:
            result[-1].append((word, rest))
    return result


def env_pairs(rest: str):
    """ENV a=b c=d / ENV a b / ARG a[=b] -> [(name, value)]."""
    if "=" not in rest.split()[0]:
        name, _, value = rest.partition(" ")
        return [(name, value.strip())]
    pairs = []
    for token in shlex.split(rest):
        name, _, value = token.partition("=")
        pairs.append((name, value))
    return pairs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_rust_builder_and_slim_runtime(name):
    st = stages(DOCKERFILES[name])
    assert len(st) >= 2, "multi-stage build expected"
    builder = st[0][0][1].split()
    assert builder[0] == "rust:1.95-slim-bookworm" and builder[-2].upper() == "AS"
    runtime = st[-1][0][1].split()[0]
    assert runtime.startswith("debian:bookworm-slim") or runtime.startswith("gcr.io/distroless/")
    copies = [rest for word, rest in st[-1] if word == "COPY"]
    assert any(c.startswith(f"--from={builder[-1]}") for c in copies), "runtime must copy the binary from the builder"
    assert f"--bin {name}" in " ".join(rest for _, rest in st[0]), "builder must build the right binary"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_runs_as_non_root(name):
    users = [rest for word, rest in stages(DOCKERFILES[name])[-1] if word == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_has_a_healthcheck_on_healthz(name):
    checks = [rest for word, rest in stages(DOCKERFILES[name])[-1] if word == "HEALTHCHECK"]
    assert checks and not checks[-1].upper().startswith("NONE")
    assert "CMD" in checks[-1] and "curl" in checks[-1]
    env = dict(p for word, rest in stages(DOCKERFILES[name])[-1] if word == "ENV" for p in env_pairs(rest))
    assert env["SWITCHYARD_HEALTH_URL"].endswith("/healthz")
    # curl must be installed in the runtime image for the check to run at all.
    runs = " ".join(rest for word, rest in stages(DOCKERFILES[name])[-1] if word == "RUN")
    assert re.search(r"apt-get install[^&]*\bcurl\b", runs)


def test_spoke_healthcheck_is_liveness_not_readiness():
    """/healthz is 503 while the spoke is out of quota: the check must accept any HTTP answer."""
    (check,) = [rest for word, rest in stages(DOCKERFILES["spoke"])[-1] if word == "HEALTHCHECK"]
    curl = check.split("curl", 1)[1]
    assert not re.search(r"\s-[a-zA-Z]*f", curl), "curl -f would mark an exhausted spoke unhealthy"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secrets_baked_in(name):
    problems = []
    for word, rest in instructions(DOCKERFILES[name]):
        if word in {"ENV", "ARG"}:
            for key, value in env_pairs(rest):
                if SECRETISH.search(key) and value:
                    problems.append(f"{word} {key} has a value")
                if re.search(r"AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9]{20,}", value):
                    problems.append(f"{word} {key} looks like a credential")
        if word in {"COPY", "ADD"} and re.search(r"\.env\b|\.pem\b|\.key\b|credentials", rest):
            problems.append(f"{word} {rest} copies a secret-looking file")
        if word == "ADD" and re.search(r"https?://", rest):
            problems.append(f"ADD {rest} fetches a remote file")
    assert not problems, problems


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entrypoint_is_exec_form_through_the_wrapper(name):
    (ep,) = [rest for word, rest in stages(DOCKERFILES[name])[-1] if word == "ENTRYPOINT"]
    assert ep.startswith("[") and f'"{name}"' in ep and "switchyard-entrypoint" in ep
    stop = [rest for word, rest in stages(DOCKERFILES[name])[-1] if word == "STOPSIGNAL"]
    assert stop == ["SIGTERM"]


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    for needed in [".git", "target", "**/.venv", "**/*.tfvars", ".env", "**/*.pem", "**/*.key"]:
        assert needed in lines, f".dockerignore misses {needed}"
    for kept in ["crates", "proto", "deploy/docker", "Cargo.toml", "Cargo.lock"]:
        assert kept not in lines, f".dockerignore must not exclude {kept}"
