"""`wanfarm simulate` on the reference home lab: the documented JSON keys, and a chart PIL opens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from controller.cli import main
from scheduler.registry import policy_names

REFERENCE = Path(__file__).resolve().parents[2] / "scheduler" / "sim" / "reference"
HOME_LAB = [
    "--pool",
    str(REFERENCE / "home-lab.pool.json"),
    "--trace",
    str(REFERENCE / "home-lab.trace.jsonl"),
]
DOCUMENTED_KEYS = {
    "jobs", "completed", "failed", "unfinished", "mean_latency_s", "p50_latency_s", "p95_latency_s",
    "p99_latency_s", "makespan_s", "gpu_busy_share", "cold_loads", "downloads", "bytes_downloaded",
    "oom_failures", "eta_error", "submit_eta_error", "submit_eta_jobs", "owner_gpu_seconds",
    "owner_share", "jain_fairness", "invalid_decisions", "place_calls", "high_jobs",
    "high_mean_latency_s", "high_p95_latency_s", "low_mean_latency_s", "preemptions", "checkpoint_s",
}  # fmt: skip


def test_json_output_has_the_documented_keys_for_greedy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *HOME_LAB, "--policy", "greedy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["policies"]["greedy"]
    assert set(report) == DOCUMENTED_KEYS
    assert report["completed"] + report["failed"] + report["unfinished"] == report["jobs"] > 200
    assert 0 < report["mean_latency_s"] <= report["p95_latency_s"] <= report["p99_latency_s"]
    assert sum(report["owner_share"].values()) == pytest.approx(1.0, abs=1e-4)


def test_the_output_gives_the_floor_no_policy_beats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *HOME_LAB, "--policy", "wanfarm,fifo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    floor = out["floor"]
    assert floor["jobs"] == out["policies"]["wanfarm"]["jobs"]
    for report in out["policies"].values():
        assert 0 < floor["mean_latency_s"] <= report["mean_latency_s"]
        assert 0 < floor["p95_latency_s"] <= report["p95_latency_s"]
    # Counting the cards' hours raises the mean above every job alone on its fastest card.
    assert floor["alone_mean_latency_s"] < floor["mean_latency_s"]
    parts = (floor["capacity_mean_latency_s"], floor["window_mean_latency_s"], floor["alone_mean_latency_s"])
    assert floor["mean_latency_s"] == max(parts)
    assert floor["window_p95_latency_s"] <= floor["p95_latency_s"]
    assert main(["simulate", *HOME_LAB, "--policy", "wanfarm"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("floor "))
    assert f"{floor['mean_latency_s']:.1f}" in row and f"{floor['p95_latency_s']:.1f}" in row


def test_plot_writes_a_png_and_the_table_names_each_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "chart.png"
    assert main(["simulate", *HOME_LAB, "--policy", "greedy", "--seed", "2", "--plot", str(chart)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("greedy ")
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100


def test_every_registered_policy_runs_the_home_lab_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    names = policy_names()
    assert main(["simulate", *HOME_LAB, "--policy", ",".join(names), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)["policies"]
    assert sorted(reports) == names
    for report in reports.values():
        assert report["completed"] > 0 and report["invalid_decisions"] == 0
