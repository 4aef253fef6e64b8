"""helm/wanfarm rendered offline by Helm's own template engine: helm-python-sdk wraps Helm's Go SDK
in a wheel, so neither a `helm` binary nor a cluster is needed."""

from __future__ import annotations

from typing import Any

import helm_python

from tests.deploy.validation import REPO, load_documents

CHART = REPO / "helm" / "wanfarm"
RELEASE, NAMESPACE = "farm", "wanfarm"


class ChartRefused(Exception):
    """The chart failed to render; the message holds the template's `fail` text."""


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest `helm template` would print for `values` over values.yaml (as `-f`)."""
    chart = helm_python.Chart.load(CHART)
    try:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except helm_python.HelmError as error:
        raise ChartRefused(str(error)) from None
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in load_documents(text)
    ]


def the(manifests: list[dict[str, Any]], kind: str, name_ends: str = "") -> dict[str, Any]:
    """The one manifest of `kind` (whose name ends so, when given)."""
    (found,) = (m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_ends))
    return found
