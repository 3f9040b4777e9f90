"""The Kubernetes manifests (infra/k8s) pass the offline validator, and broken ones do not.

The validator (infra/k8s/validate, Go) is built here with ``go build``: it renders each overlay
with the kustomize library, decodes every object strictly into its typed Kubernetes struct and
checks the references between objects. Its inputs from this tree, the setting names and the
gateway's metric names, are taken from the code itself, so a renamed setting fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from processors.gateway.metrics import GatewayMetrics
from streams.settings import Settings

# the first build compiles k8s.io/api and kustomize (minutes on a cold cache, seconds after)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
OVERLAYS = ("overlays/dev", "overlays/production")


def go_binary() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        pytest.fail("Go is needed to build infra/k8s/validate: install Go >= 1.26 (go.dev/dl)")
    return found


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The built validator with this tree's setting and metric names as its arguments."""
    out = tmp_path_factory.mktemp("validate")
    binary = out / "validate"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    built = subprocess.run(
        [go_binary(), "build", "-o", str(binary), "."],
        cwd=K8S / "validate",
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert built.returncode == 0, built.stderr
    names = out / "settings.txt"
    names.write_text("".join(f"LEADERBOARD_{f.upper()}\n" for f in Settings.model_fields))
    metrics = out / "metrics.txt"
    registry = GatewayMetrics(lambda: None).registry
    metrics.write_text("".join(f"{m.name}\n" for m in registry.collect()))
    return [str(binary), "-settings", str(names), "-metrics", str(metrics)]


def run(validator: list[str], root: Path, *dirs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*validator, *dirs], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_every_overlay_is_valid(validator: list[str]) -> None:
    done = run(validator, K8S, *OVERLAYS)
    assert done.returncode == 0, done.stderr
    for overlay in OVERLAYS:
        assert f"{overlay}: 14 objects" in done.stdout, done.stdout


#: (file under infra/k8s, text replaced, its replacement, the validator's complaint)
BREAKAGES = [
    pytest.param(
        "base/gateway.yaml",
        "  revisionHistoryLimit: 3",
        "  revisionHistoryLimits: 3",
        'json: unknown field "revisionHistoryLimits"',
        id="unknown-field",
    ),
    pytest.param(
        "base/projector.yaml",
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriodSeconds: sixty",
        "cannot unmarshal string into Go struct field",
        id="wrong-type",
    ),
    pytest.param(
        "base/sinks.yaml",
        "              port: metrics\n            periodSeconds: 10\n"
        "            timeoutSeconds: 5\n            failureThreshold: 3",
        "              port: 9101\n            periodSeconds: 10\n"
        "            timeoutSeconds: 5\n            failureThreshold: 3",
        "livenessProbe: port 9101 is not a port of the container",
        id="probe-port",
    ),
    pytest.param(
        "base/config.yaml",
        "LEADERBOARD_SESSION_TIMEOUT_S:",
        "LEADERBOARD_SESSION_TIMEOUT:",
        "LEADERBOARD_SESSION_TIMEOUT is not a setting of streams/settings.py",
        id="unknown-setting",
    ),
    pytest.param(
        "overlays/production/kustomization.yaml",
        "    count: 4",
        "    count: 13",
        "13 replicas but the topics have 12 partitions",
        id="replicas-over-partitions",
    ),
    pytest.param(
        "base/gateway-hpa.yaml",
        "    name: leaderboard-gateway\n  minReplicas",
        "    name: leaderboard-gw\n  minReplicas",
        'target apps/v1 Deployment "leaderboard-gw" does not exist',
        id="hpa-target",
    ),
    pytest.param(
        "base/gateway-hpa.yaml",
        "name: gateway_ws_subscribers",
        "name: gateway_websockets",
        'Pods metric "gateway_websockets" is not a metric the gateway exposes',
        id="hpa-metric",
    ),
    pytest.param(
        "base/gateway.yaml",
        "      targetPort: http",
        "      targetPort: web",
        "targets web, not a container port",
        id="service-port",
    ),
    pytest.param(
        "base/gateway.yaml",
        "          lifecycle:\n            preStop:\n"
        "              sleep:\n                seconds: 5\n",
        "",
        "has no preStop",
        id="no-prestop",
    ),
    pytest.param(
        "base/topk.yaml",
        "              memory: 256Mi\n",
        "",
        "needs a memory request and limit",
        id="no-memory-limit",
    ),
    pytest.param(
        "base/disruption-budgets.yaml",
        "app.kubernetes.io/component: sinks",
        "app.kubernetes.io/component: sink",
        "matches no Deployment's pods",
        id="pdb-selector",
    ),
]


@pytest.mark.parametrize(("path", "old", "new", "complaint"), BREAKAGES)
def test_a_broken_manifest_fails(
    validator: list[str], tmp_path: Path, path: str, old: str, new: str, complaint: str
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("validate"))
    target = copy / path
    text = target.read_text()
    assert text.count(old) == 1, f"{path}: the text to break is not there once: {old!r}"
    target.write_text(text.replace(old, new))
    done = run(validator, copy, *OVERLAYS)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert complaint in done.stderr, done.stderr
