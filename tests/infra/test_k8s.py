"""Static checks of deploy/k8s/: Deployments, Services, HPAs, PDBs, probes and graceful
termination, as the deployment issue asks."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from conftest import K8S

APPS = {"hub": "switchyard-hub", "spoke": "switchyard-spoke"}
CONFIGS = {"hub": K8S / "hub.example.toml", "spoke": K8S / "spoke.toml"}


def load_all():
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


DOCS = load_all()


def seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert m, duration
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n // 1000, "s": n, "m": 60 * n}[unit]


def container(app):
    spec = DOCS[("Deployment", APPS[app])]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    return spec, c


def test_kustomization_lists_existing_files():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    for gen in kust["configMapGenerator"]:
        for f in gen["files"]:
            assert (K8S / f).is_file(), f
    # hub.toml is the operator's copy of hub.example.toml (gitignored: it holds key hashes).
    for gen in kust["secretGenerator"]:
        for f in gen["files"]:
            assert f == "hub.toml" and (K8S / "hub.example.toml").is_file()
    assert "hub.toml" in (K8S / ".gitignore").read_text()


@pytest.mark.parametrize("app", APPS)
def test_deployment_service_hpa_pdb_exist(app):
    name = APPS[app]
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"]:
        assert (kind, name) in DOCS, f"missing {kind} {name}"


@pytest.mark.parametrize("app", APPS)
def test_readiness_probe_is_healthz(app):
    _, c = container(app)
    probe = c["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"


@pytest.mark.parametrize("app", APPS)
def test_liveness_probe_is_generous(app):
    _, c = container(app)
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30
    ready = c["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]


def test_spoke_liveness_does_not_use_healthz():
    """/healthz is 503 when the spoke's quota is exhausted; liveness must not restart it then."""
    _, c = container("spoke")
    assert "tcpSocket" in c["livenessProbe"]
    assert "httpGet" not in c["livenessProbe"]


@pytest.mark.parametrize("app", APPS)
def test_termination_grace_exceeds_prestop_plus_drain_timeout(app):
    spec, c = container(app)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop >= 5
    drain = seconds(tomllib.loads(CONFIGS[app].read_text()).get("drain_timeout", "30s"))
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain


@pytest.mark.parametrize("app", APPS)
def test_hpa_cpu_and_requests_per_second(app):
    hpa = DOCS[("HorizontalPodAutoscaler", APPS[app])]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APPS[app]}
    assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] == 50
    by_type = {m["type"]: m for m in hpa["metrics"]}
    cpu = by_type["Resource"]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert by_type["Pods"]["pods"]["metric"]["name"].endswith("requests_per_second")
    text = (K8S / f"{app}.yaml").read_text()
    assert "NEEDS A METRICS ADAPTER" in text
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


@pytest.mark.parametrize("app", APPS)
def test_pdb_selects_the_deployment_pods(app):
    pdb = DOCS[("PodDisruptionBudget", APPS[app])]["spec"]
    labels = DOCS[("Deployment", APPS[app])]["spec"]["template"]["metadata"]["labels"]
    assert pdb["maxUnavailable"] == 1
    assert all(labels.get(k) == v for k, v in pdb["selector"]["matchLabels"].items())


@pytest.mark.parametrize("app", APPS)
def test_rollouts_never_drop_below_capacity(app):
    strategy = DOCS[("Deployment", APPS[app])]["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("app", APPS)
def test_pods_are_locked_down(app):
    spec, c = container(app)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"]["cpu"], "the HPA's CPU utilisation needs a CPU request"
    assert ":latest" not in c["image"]
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("app", APPS)
def test_container_port_matches_config_listen(app):
    _, c = container(app)
    port = c["ports"][0]["containerPort"]
    listen = tomllib.loads(CONFIGS[app].read_text())["listen"]
    assert listen == f"0.0.0.0:{port}"


def test_spoke_service_is_headless_for_per_pod_discovery():
    svc = DOCS[("Service", APPS["spoke"])]["spec"]
    assert svc["clusterIP"] == "None"
    assert svc["publishNotReadyAddresses"] is False
    hub = tomllib.loads(CONFIGS["hub"].read_text())
    assert hub["providers"][0]["dns"].startswith("switchyard-spoke.")
    assert hub["providers"][0]["dns_port"] == svc["ports"][0]["port"]
