"""deploy/kserve validated offline against KServe's released CRD schemas (kserve_crds/, kube_schema.py),
and held to what docs/kserve.md says of it: its container's arguments are the server's own flags,
its ports are KServe's, and each example InferenceService names the runtime's format and ports."""

from __future__ import annotations

import argparse
import copy
import functools
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from lstmserve import layout
from lstmserve.server.settings import Settings, add_arguments, from_arguments

from ..conftest import REPO
from . import kube_schema

KSERVE = REPO / "deploy" / "kserve"
MANIFESTS = sorted(KSERVE.glob("*.yaml"))
CRDS = Path(__file__).with_name("kserve_crds")
SCHEMAS = {  # (apiVersion, kind) -> the schema the API server would check it against
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): CRDS / "clusterservingruntime-v1alpha1.json.gz",
    ("serving.kserve.io/v1beta1", "InferenceService"): CRDS / "inferenceservice-v1beta1.json.gz",
}
HTTP, GRPC = 8080, 9000  # KServe's: Triton's and MLServer's runtimes listen there


@functools.cache
def validator(api_version: str, kind: str) -> Any:
    return kube_schema.load(SCHEMAS[api_version, kind])


def problems(document: dict) -> list[str]:
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in SCHEMAS:
        return [f"no KServe schema for apiVersion/kind {key}"]
    return kube_schema.problems(validator(*key), document)


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def runtime() -> dict:
    (document,) = documents(KSERVE / "clusterservingruntime.yaml")
    return document


def inference_services() -> list[dict]:
    return documents(KSERVE / "inferenceservice.yaml")


def test_every_kind_is_there():
    kinds = [document["kind"] for path in MANIFESTS for document in documents(path)]
    assert kinds.count("ClusterServingRuntime") == 1 and kinds.count("InferenceService") >= 1


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[path.name for path in MANIFESTS])
def test_manifest_is_valid(manifest):
    for document in documents(manifest):
        assert problems(document) == [], document["metadata"]["name"]


class Rename(str):
    """A key's new name, in place of a new value."""


def broken_copy(document: dict, path: str, change: Any) -> dict:
    """A deep copy with the value at a dotted path (numbers index lists) set, or its key renamed."""
    broken = copy.deepcopy(document)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    node = broken
    for part in parents:
        node = node[part]
    if isinstance(change, Rename):
        node[change] = node.pop(last)
    else:
        node[last] = change
    return broken


TMP = {"name": "tmp", "mountPath": "/tmp"}
RESTART_ON_1_TWICE = {"action": "Restart", "exitCodes": {"operator": "In", "values": [1, 1]}}  # a set
# the protocol left out is TCP's: the same port twice
PORT_TWICE = [{"containerPort": GRPC, "protocol": "TCP"}, {"containerPort": GRPC}]
CONTAINER, MODEL = "spec.containers.0", "spec.predictor.model"
BROKEN = {  # name: (which manifest, path, new value or name, what the refusal says)
    "unknown-field": ("runtime", "spec.protocolVersions", Rename("protocols"), "'protocols' was unexpected"),
    "port-as-text": ("runtime", f"{CONTAINER}.ports", [{"containerPort": "9000"}], "not of type 'integer'"),
    "port-past-int32": ("runtime", f"{CONTAINER}.ports", [{"containerPort": 2**31}], "is not a 'int32'"),
    "mount-twice": ("runtime", f"{CONTAINER}.volumeMounts", [TMP, TMP], "same mountPath"),
    "priority-0": ("runtime", "spec.supportedModelFormats.0.priority", 0, "less than the minimum of 1"),
    "set-item-twice": ("runtime", f"{CONTAINER}.restartPolicyRules", [RESTART_ON_1_TWICE], "non-unique"),
    "other-api-version": ("runtime", "apiVersion", "serving.kserve.io/v1beta1", "no KServe schema"),
    "misspelt-storage-uri": ("rest", f"{MODEL}.storageUri", Rename("storageURI"), "'storageURI' was un"),
    "format-without-name": ("rest", f"{MODEL}.modelFormat", {}, "'name' is a required"),
    "port-twice": ("grpc", f"{MODEL}.ports", PORT_TWICE, "same containerPort/protocol"),
}


@pytest.mark.parametrize(("which", "path", "change", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_copy_is_refused(which, path, change, message):
    rest, grpc = inference_services()
    document = {"runtime": runtime(), "rest": rest, "grpc": grpc}[which]
    found = problems(broken_copy(document, path, change))
    assert any(message in problem for problem in found), found


def test_an_extension_the_conversion_does_not_know_stops_it():
    with pytest.raises(ValueError, match="x-kubernetes-validations"):
        kube_schema.to_json_schema({"type": "object", "x-kubernetes-validations": [{"rule": "self.x > 0"}]})


def parse(args: list[str]) -> tuple[Settings, list[str]]:
    """The server's settings from these flags alone (no LSTMSERVE_* variables), and the flags it does
    not know."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    known, unknown = parser.parse_known_args(args)
    return from_arguments(known, {}), unknown


def runtime_settings(name: str, extra: list[str] | None = None) -> Settings:
    (container,) = runtime()["spec"]["containers"]
    args = [arg.replace("{{.Name}}", name) for arg in container["args"]] + (extra or [])
    settings, unknown = parse(args)
    # --http-port comes with the REST server, built beside this; until it is merged, it is the one
    # flag the settings may not know (and then this test checks it by its text).
    if "http_port" in {field.name for field in fields(Settings)}:
        assert unknown == [] and settings.http_port == HTTP
    else:
        assert unknown == [f"--http-port={HTTP}"], unknown
    return settings


def test_the_runtime_keeps_its_promises():
    spec = runtime()["spec"]
    assert [fmt["name"] for fmt in spec["supportedModelFormats"]] == ["lstm-onnx"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor's into
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in empty_dirs}
    assert writable == {"/tmp"}

    settings = runtime_settings("digits")
    assert (settings.host, settings.port) == ("0.0.0.0", GRPC)
    assert (settings.repository, settings.model_name) == ("/mnt/models", "digits")
    assert settings.metrics_port == int(spec["annotations"]["prometheus.kserve.io/port"])
    assert len({HTTP, GRPC, settings.metrics_port}) == 3
    # KServe appends an InferenceService's args to these: an empty name there serves a repository.
    assert runtime_settings("digits", ["--model-name="]).model_name == ""


def test_the_runtime_asks_for_what_the_deployment_does():
    """One sizing, argued in deploy/kubernetes/deployment.yaml, for the same server."""
    deployment = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (container,) = runtime()["spec"]["containers"]
    assert container["resources"] == deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize("service", inference_services(), ids=lambda service: service["metadata"]["name"])
def test_each_inference_service_is_one_the_runtime_serves(service):
    model = service["spec"]["predictor"]["model"]
    runtime_spec = runtime()["spec"]
    assert model["modelFormat"]["name"] in [fmt["name"] for fmt in runtime_spec["supportedModelFormats"]]
    assert model.get("runtime", runtime()["metadata"]["name"]) == runtime()["metadata"]["name"]
    assert model["protocolVersion"] in runtime_spec["protocolVersions"] and model["storageUri"]
    name = service["metadata"]["name"]
    assert layout.is_model_name(name)  # {{.Name}}: it becomes the served model's name
    settings = runtime_settings(name)
    if model["protocolVersion"] == "grpc-v2":  # Knative's one port: the gRPC one, by name h2c
        assert [(port["name"], port["containerPort"]) for port in model["ports"]] == [("h2c", settings.port)]
    else:
        assert "ports" not in model  # Knative's default: 8080, the REST port
