"""The Grafana dashboard names only metrics the farm exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from controller.autoscale_metrics import DemandCollector
from controller.metrics import FarmMetrics
from controller.store import JobStore

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "wanfarm-dashboard.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
}


def test_every_metric_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    used = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    unknown = sorted(name for name in used if base_name(name) not in exported)
    assert not unknown, f"the dashboard queries metrics the farm does not export: {unknown}"


def test_the_dashboard_covers_queue_throughput_gpus_cache_latency_and_class_demand() -> None:
    used = {base_name(name) for expr in dashboard_exprs() for name in metric_names(expr)}
    for name in (
        "wanfarm_queue_depth",
        "wanfarm_jobs_finished_total",
        "wanfarm_agent_gpu_utilization_ratio",
        "wanfarm_agent_vram_used_bytes",
        "wanfarm_weight_cache_hits_total",
        "wanfarm_job_render_seconds",
        "wanfarm_class_gpus_wanted",
        "wanfarm_class_agents",
        "wanfarm_agents_released_total",
        "wanfarm_eta_error_ratio",
    ):
        assert name in used
    assert any("histogram_quantile" in expr for expr in dashboard_exprs())


def test_the_check_catches_a_misspelt_metric(tmp_path: Path) -> None:
    names = metric_names('sum by (model) (rate(wanfarm_jobs_finsihed_total{outcome="failed"}[5m]))')
    assert names == {"wanfarm_jobs_finsihed_total"}
    assert "wanfarm_jobs_finsihed_total" not in exported_names(tmp_path)


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name a farm's /metrics can carry (histograms by their base name)."""
    metrics = FarmMetrics()
    metrics.registry.register(DemandCollector(lambda: None))  # a farm given GPU classes adds these
    with JobStore(tmp_path / "jobs.db") as store:
        metrics.attach(store, list)
        families = list(metrics.registry.collect())
    names = set()
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(json.loads(DASHBOARD.read_text()))
    assert exprs, f"no PromQL expressions found in {DASHBOARD}"
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names, or inside strings, matchers and ranges."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # label matchers and ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        after = text[match.end() :].lstrip()
        if after.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # a number's exponent or unit, e.g. 1e3
        names.add(match.group())
    return names


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
