"""tests/gpu/checks.py, which `make gpu-smoke` runs: each check's JSON lines pass through, each
check ends with a line of its exit, "nothing to check here" (3) is no failure, a bad name is exit 2,
and a budget for the whole run skips what cannot start and stops what runs past it."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "checks.py"


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_a_check_with_nothing_to_check_here_is_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--only", "sage", "--out", str(tmp_path)]) == 0  # no CUDA here: sage.py exits 3
    assert lines(capsys) == [
        {"check": "sage", "skipped": "no CUDA device"},
        {"check": "sage", "exit": 3, "seconds": pytest.approx(5, abs=60)},
    ]
    assert "no CUDA device" in (tmp_path / "sage.log").read_text()


def test_a_failing_check_fails_the_run_with_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # cold_start at one layer cannot reach a target of 100 times the raw bandwidth.
    main = runpy.run_path(str(SCRIPT))["main"]
    code = main(
        ["--only", "cold_start", "--quick", "--extra", "cold_start=--target 100", "--out", str(tmp_path)]
    )
    report, end = lines(capsys)
    assert report["check"] == "cold_start" and report["ok"] is False
    assert end["exit"] == 1 and code == 1


def test_an_unknown_check_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    with pytest.raises(SystemExit) as exited:
        main(["--only", "sage,gpu-magic"])
    assert exited.value.code == 2 and "unknown checks: gpu-magic" in capsys.readouterr().err


def test_the_lora_and_weight_file_checks_run_as_files_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each script finds the tests package by itself (run as a file, tests/gpu is all its path).
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--only", "lora_mmgp,weight_files", "--quick", "--out", str(tmp_path)]) == 0
    reports = lines(capsys)
    assert [(report["check"], report.get("ok", report.get("exit"))) for report in reports] == [
        ("lora_mmgp", True),
        ("lora_mmgp", 0),
        ("weight_files", True),
        ("weight_files", 0),
    ]


def test_a_check_that_cannot_start_within_the_budget_is_skipped_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    # sage exits 3 here within seconds; fp16 would then start with under 20 s of the 20.5 left.
    assert main(["--only", "sage,fp16", "--budget", "20.5", "--out", str(tmp_path)]) == 0
    reports = lines(capsys)
    assert [report["check"] for report in reports] == ["sage", "sage", "fp16"]
    assert reports[1]["exit"] == 3 and reports[2]["skipped"].endswith("s left of the run's budget")
    assert not (tmp_path / "fp16.log").exists()


def test_a_check_running_past_the_budget_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    # fp16 at full size (30 layers, 832x480x33) takes minutes on this CPU.
    assert main(["--only", "fp16", "--budget", "21", "--out", str(tmp_path)]) == 124
    [report] = lines(capsys)
    assert report["check"] == "fp16" and report["exit"] == 124 and 20 < report["seconds"] < 40
    assert (tmp_path / "fp16.log").read_text().startswith("fp16: over its 21 s")
