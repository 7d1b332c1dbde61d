"""deploy/kubernetes validated offline against the Kubernetes schemas (kubernetes-validate --strict)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

VALIDATE = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
MANIFESTS = sorted(
    p for p in (REPO / "deploy" / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml"
)
pytestmark = pytest.mark.skipif(not Path(VALIDATE).exists(), reason="pip install kubernetes-validate")


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([VALIDATE, "--strict", str(path)], capture_output=True, text=True)


def test_every_kind_is_there():
    text = "\n".join(path.read_text() for path in MANIFESTS)
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert f"kind: {kind}" in text


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid(manifest):
    done = validate(manifest)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_keeps_its_promises():
    import yaml

    deployment = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
    env = {item["name"]: item["value"] for item in container["env"]}
    health = int(env["LSTMSERVE_HEALTH_PORT"])  # plaintext, health only: the probes can speak to it
    assert container["readinessProbe"]["grpc"]["port"] == health == container["livenessProbe"]["grpc"]["port"]
    secrets = {
        volume["name"]: volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume
    }
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    for variable in ("LSTMSERVE_TLS_CERT", "LSTMSERVE_TLS_KEY", "LSTMSERVE_AUTH_TOKENS"):
        folder = str(Path(env[variable]).parent)
        assert mounts.get(folder) in secrets, (variable, folder)  # each file comes from a Secret
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_a_broken_manifest_is_refused(tmp_path):
    broken = tmp_path / "broken.yaml"
    text = (REPO / "deploy" / "kubernetes" / "service.yaml").read_text()
    broken.write_text(text.replace("clusterIP: None", "clusterIP: None\n  stickySessions: true"))
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("name", ["deployment.yaml", "deployment-gpu.yaml"])
def test_each_port_is_declared_once_and_set_where_it_is_named(name):
    """gRPC, REST (KServe's v2 protocol) and the health-only port: distinct numbers, each the one its
    LSTMSERVE_* variable sets (the gRPC port is the image's LSTMSERVE_PORT), each the Service's target."""
    import yaml

    deployment = yaml.safe_load((REPO / "deploy" / "kubernetes" / name).read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert set(ports) == {"grpc", "http", "health"} and len(set(ports.values())) == len(ports)
    env = {item["name"]: item["value"] for item in container["env"]}
    assert int(env["LSTMSERVE_HTTP_PORT"]) == ports["http"]
    assert int(env["LSTMSERVE_HEALTH_PORT"]) == ports["health"]
    assert f"LSTMSERVE_PORT={ports['grpc']}" in (REPO / "Dockerfile").read_text()
    service = yaml.safe_load((REPO / "deploy" / "kubernetes" / "service.yaml").read_text())
    served = {port["targetPort"]: port["port"] for port in service["spec"]["ports"]}
    assert served == {"grpc": ports["grpc"], "http": ports["http"]}  # health is the kubelet's alone
