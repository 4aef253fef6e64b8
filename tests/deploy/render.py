"""helm/wanfarm rendered offline by Helm's own template engine: helm-python-sdk wraps Helm's Go SDK
in a wheel, so neither a `helm` binary nor a cluster is needed.

The Go runtime it loads stays in one spawned helper process: pytest's own process, which later
starts Ray clusters and forks, never carries it."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

# The helper imports this module alone: nothing heavier than yaml here.
CHART = Path(__file__).resolve().parents[2] / "helm" / "wanfarm"
RELEASE, NAMESPACE = "farm", "wanfarm"
_helper: ProcessPoolExecutor | None = None


class ChartRefused(Exception):
    """The chart failed to render; the message holds the template's `fail` text."""


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest `helm template` would print for `values` over values.yaml (as `-f`)."""
    return _in_helper().submit(_render, values).result()


def lint(strict: bool = True) -> dict[str, Any]:
    """`helm lint` of the chart: {"messages": [{"severity", "path", "error"}], "errors": [...]}."""
    return _in_helper().submit(_lint, strict).result()


def the(manifests: list[dict[str, Any]], kind: str, name_ends: str = "") -> dict[str, Any]:
    """The one manifest of `kind` (whose name ends so, when given)."""
    (found,) = (m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_ends))
    return found


def _in_helper() -> ProcessPoolExecutor:
    global _helper
    if _helper is None:
        _helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _helper


def _render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    import helm_python

    chart = helm_python.Chart.load(CHART)
    try:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except helm_python.HelmError as error:
        raise ChartRefused(str(error)) from None
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _lint(strict: bool) -> dict[str, Any]:
    import helm_python

    return helm_python.lint(CHART, strict=strict)
