"""Offline validation of Kubernetes manifests: core kinds with kubernetes-validate, custom
resources (KubeRay, Prometheus Operator) against their CRDs' OpenAPI schemas with jsonschema."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / ".." / "shared" / "schemas"
KUBERNETES_VERSION = "1.31.0"
CRD_FILES = {
    ("ray.io/v1", "RayCluster"): "kuberay/ray.io_rayclusters.yaml",
    ("ray.io/v1", "RayService"): "kuberay/ray.io_rayservices.yaml",
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ): "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
}


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(manifest: dict[str, Any]) -> None:
    """Raise if `manifest` is not a valid object of its kind (skips CRD kinds without schemas)."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_FILES:
        jsonschema.validate(manifest, crd_schema(*key), cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def require_schemas() -> None:
    """Skip when ../shared/schemas is absent, except under CI=true, where it is a failure."""
    if SCHEMAS.is_dir():
        return
    message = f"CRD schemas not found at {SCHEMAS.resolve()} (they live beside the project)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema for `api_version`, made strict and jsonschema-ready."""
    crd = yaml.safe_load((SCHEMAS / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    (schema,) = (v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    return _strict(copy.deepcopy(schema))


def _strict(node: Any) -> Any:
    """Translate Kubernetes structural-schema extensions into plain JSON Schema.

    int-or-string becomes anyOf integer/string; objects with declared properties reject unknown
    fields (as the API server prunes them: a typo would be lost silently), unless the schema
    preserves unknown fields."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _strict(value) for key, value in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node
