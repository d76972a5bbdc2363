"""checkov (PyPI) over terraform/ and over deploy/ (Kubernetes manifests and Dockerfiles).

No failed check is allowed; a check may be skipped only inline, with its reason:
`#checkov:skip=CKV_...:reason` in HCL, a `checkov.io/skipN: CKV_...=reason` annotation in YAML.

checkov lives in its own venv (tests/infra/check.sh makes it) and is found through
$SWITCHYARD_CHECKOV; without it these tests are skipped, unless SWITCHYARD_REQUIRE_CHECKOV=1."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from conftest import ROOT

MIN_REASON = 20


def checkov_binary() -> str:
    exe = os.environ.get("SWITCHYARD_CHECKOV") or str(ROOT / "tests/infra/.venv/checkov/bin/checkov")
    if not pathlib.Path(exe).is_file():
        if os.environ.get("SWITCHYARD_REQUIRE_CHECKOV") == "1":
            pytest.fail(f"checkov not found at {exe}")
        pytest.skip("checkov not installed (run tests/infra/check.sh)")
    return exe


def run_checkov(directory: str, frameworks: list[str]) -> list[dict]:
    cmd = [
        checkov_binary(),
        "--directory", directory,
        "--framework", *frameworks,
        "--output", "json",
        "--compact",
        # Offline: no Prisma Cloud mappings, no external modules.
        "--skip-download",
        "--download-external-modules", "false",
    ]
    env = {**os.environ, "LOG_LEVEL": "ERROR", "BC_SKIP_MAPPING": "TRUE"}
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    # Exit code 1 = failed checks; anything else non-zero = checkov itself failed.
    assert run.returncode in (0, 1), f"checkov failed ({run.returncode}):\n{run.stderr[-4000:]}"
    report = json.loads(run.stdout)
    return report if isinstance(report, list) else [report]


def describe(check: dict) -> str:
    return f"{check['check_id']} {check['resource']} ({check['file_path']}:{check.get('file_line_range')}) {check.get('check_name', '')}"


def assert_clean(reports: list[dict], frameworks: list[str]):
    seen = {r["check_type"] for r in reports}
    assert set(frameworks) <= seen, f"checkov scanned {seen}, expected {frameworks}"
    failed, unexplained, passed = [], [], 0
    for report in reports:
        results = report["results"]
        passed += len(results.get("passed_checks", []))
        failed += [describe(c) for c in results.get("failed_checks", [])]
        for c in results.get("skipped_checks", []):
            reason = (c.get("check_result") or {}).get("suppress_comment") or ""
            if len(reason.strip()) < MIN_REASON:
                unexplained.append(f"{describe(c)}: reason {reason!r}")
        assert not results.get("parsing_errors"), f"checkov could not parse {results['parsing_errors']}"
    assert passed > 0, "checkov ran no check"
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert not unexplained, "checkov skips without a reason:\n" + "\n".join(unexplained)


def test_checkov_terraform():
    assert_clean(run_checkov("terraform", ["terraform"]), ["terraform"])


def test_checkov_kubernetes_and_dockerfiles():
    assert_clean(run_checkov("deploy", ["kubernetes", "dockerfile"]), ["kubernetes", "dockerfile"])
