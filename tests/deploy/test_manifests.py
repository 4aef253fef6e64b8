"""deploy/kuberay validates offline: core kinds against Kubernetes' schemas, custom resources
against their CRDs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from kubernetes_validate.utils import ValidationError

from tests.deploy.render import render, the
from tests.deploy.validation import CRD_FILES, REPO, crd_schema, load_documents, require_schemas, validate

KUBERAY = REPO / "deploy" / "kuberay"


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted(KUBERAY.glob("*.yaml"))
        for doc in load_documents(path.read_text())
    ]


MANIFESTS = _manifests()
CORE = [(name, doc) for name, doc in MANIFESTS if (doc["apiVersion"], doc["kind"]) not in CRD_FILES]
CUSTOM = [(name, doc) for name, doc in MANIFESTS if (doc["apiVersion"], doc["kind"]) in CRD_FILES]


def test_the_manifests_hold_every_kind_the_farm_needs() -> None:
    kinds = sorted({doc["kind"] for _, doc in MANIFESTS})
    assert kinds == [
        "ConfigMap",
        "PersistentVolumeClaim",
        "RayCluster",
        "Secret",
        "Service",
        "ServiceMonitor",
    ]


@pytest.mark.parametrize(("name", "manifest"), CORE, ids=[name for name, _ in CORE])
def test_core_manifest_is_valid(name: str, manifest: dict[str, Any]) -> None:
    validate(manifest)


@pytest.mark.parametrize(("name", "manifest"), CUSTOM, ids=[name for name, _ in CUSTOM])
def test_custom_resource_matches_its_crd(name: str, manifest: dict[str, Any]) -> None:
    require_schemas()
    validate(manifest)


def test_crd_validation_rejects_a_misspelt_field() -> None:
    require_schemas()
    (cluster,) = (doc for _, doc in MANIFESTS if doc["kind"] == "RayCluster")
    broken = {**cluster, "spec": {**cluster["spec"], "enableInTreeAutoscalling": True}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("ray.io/v1", "RayCluster"))


def test_core_validation_rejects_a_misspelt_field() -> None:
    (service,) = (doc for _, doc in CORE if doc["kind"] == "Service")
    broken = {**service, "spec": {**service["spec"], "selectr": {}}}
    with pytest.raises(ValidationError):
        validate(broken)


def test_head_runs_the_farm_without_gpus_and_workers_take_one_gpu_each() -> None:
    (cluster,) = (doc for _, doc in MANIFESTS if doc["kind"] == "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    command = " ".join(head["template"]["spec"]["containers"][0]["args"])
    for flag in ("wanfarm up", "--host 0.0.0.0", "--port 8000", "--ray-address auto", "--api-keys"):
        assert flag in command
    assert "--block" in command  # stripped from KubeRay's ray start, so `wanfarm up` runs after it
    groups = cluster["spec"]["workerGroupSpecs"]
    assert len(groups) >= 3
    for group in groups:
        pod = group["template"]["spec"]
        assert pod["nodeSelector"]["nvidia.com/gpu.product"].startswith("NVIDIA-")
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert any("hostPath" in volume for volume in pod["volumes"])
        assert group["minReplicas"] <= group["maxReplicas"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert "redisAddress" in cluster["spec"]["gcsFaultToleranceOptions"]


def test_the_manifests_scale_and_drain_as_the_chart_does_by_default() -> None:
    """deploy/kuberay is the chart's default output written out by hand: the parts autoscaling and
    draining rest on must not drift from it."""
    chart = render()
    (cluster,) = (doc for _, doc in MANIFESTS if doc["kind"] == "RayCluster")
    rendered = the(chart, "RayCluster")
    assert cluster["spec"]["autoscalerOptions"] == rendered["spec"]["autoscalerOptions"]
    head_args = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--gpu-classes /etc/wanfarm/gpu-classes.json" in head_args
    for mine, theirs in zip(
        cluster["spec"]["workerGroupSpecs"], rendered["spec"]["workerGroupSpecs"], strict=True
    ):
        for key in ("groupName", "minReplicas", "maxReplicas", "replicas"):
            assert mine[key] == theirs[key]
        assert {k: mine["rayStartParams"][k] for k in ("num-gpus", "resources")} == {
            k: theirs["rayStartParams"][k] for k in ("num-gpus", "resources")
        }
        pod, rendered_pod = mine["template"]["spec"], theirs["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == rendered_pod["terminationGracePeriodSeconds"]
        container, rendered_container = pod["containers"][0], rendered_pod["containers"][0]
        assert container["lifecycle"] == rendered_container["lifecycle"]
        assert [e["name"] for e in container["env"]] == [e["name"] for e in rendered_container["env"]]
    (classes,) = (doc for _, doc in MANIFESTS if doc["kind"] == "ConfigMap")
    assert json.loads(classes["data"]["gpu-classes.json"]) == json.loads(
        the(chart, "ConfigMap", "-gpu-classes")["data"]["gpu-classes.json"]
    )
    (keys,) = (
        doc
        for _, doc in MANIFESTS
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "wanfarm-api-keys"
    )
    admin = next(k["key"] for k in json.loads(keys["stringData"]["keys.json"]) if k["role"] == "admin")
    assert keys["stringData"]["drain-key"] == admin
