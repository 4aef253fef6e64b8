"""helm/wanfarm: its files parse, its templates balance and read only values that values.yaml
declares, and its output, rendered by Helm's engine (tests/deploy/render.py), validates like
deploy/kuberay."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart_lint import missing_values, unbalanced
from tests.deploy.render import CHART, lint, render
from tests.deploy.validation import CRD_FILES, REPO, require_schemas, validate

TEMPLATES = sorted((CHART / "templates").glob("*"))


def _values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def test_chart_yaml_declares_a_v2_chart_with_a_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "wanfarm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


@pytest.mark.parametrize("template", TEMPLATES, ids=[path.name for path in TEMPLATES])
def test_template_balances_its_blocks(template: Path) -> None:
    assert unbalanced(template.read_text()) is None


@pytest.mark.parametrize("template", TEMPLATES, ids=[path.name for path in TEMPLATES])
def test_template_reads_only_declared_values(template: Path) -> None:
    assert missing_values(template.read_text(), _values()) == []


def test_the_checks_catch_an_undeclared_value_and_a_missing_end() -> None:
    values = {"image": {"tag": "1"}, "groups": [{"name": "a"}]}
    template = (
        "{{ .Values.image.tag }}{{ .Values.image.digest }}"
        "{{ range .Values.groups }}{{ .name }}{{ .gpu }}{{ end }}"
    )
    assert missing_values(template, values) == ["image.digest", "groups.[].gpu"]
    assert unbalanced("{{- if .Values.x }}{{ range .Values.y }}{{ end }}") == "1 block(s) never closed"


def test_every_value_is_documented_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    assert set(_leaf_paths(_values())) <= documented


def test_notes_say_how_to_submit_the_first_job() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "wanfarm submit --server" in notes
    assert "--api-key" in notes
    assert "examples/wan-tiny.json" in notes
    assert (REPO / "examples" / "wan-tiny.json").is_file()


def test_helm_lint_strict_finds_nothing_above_info() -> None:
    report = lint(strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_rendered_chart_validates() -> None:
    manifests = render({"serviceMonitor": {"enabled": True}, "ingress": {"enabled": True}})
    kinds = {doc["kind"] for doc in manifests}
    assert {
        "RayCluster",
        "Service",
        "Secret",
        "PersistentVolumeClaim",
        "ServiceMonitor",
        "Ingress",
        "ConfigMap",
    } <= kinds
    if any((doc["apiVersion"], doc["kind"]) in CRD_FILES for doc in manifests):
        require_schemas()
    for manifest in manifests:
        validate(manifest)


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml's settings; a list of objects (workerGroups) is one entry per field,
    and a Kubernetes resources block is one setting."""
    if isinstance(node, dict) and node and not prefix.endswith("resources."):
        return [path for key, value in node.items() for path in _leaf_paths(value, f"{prefix}{key}.")]
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [prefix[:-1] + "[]" + path for path in _leaf_paths(node[0], ".")]
    return [prefix[:-1]]
