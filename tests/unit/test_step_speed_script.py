"""tests/gpu/step_speed.py on CPU with one layer of Wan 1.3B: the same pipeline renders plain and
through the pipeline host, and the report gives each side's step and the farm's overhead."""

from __future__ import annotations

import pytest

from tests.gpu_scripts import run_gpu_script


def test_the_step_check_times_both_sides_of_the_same_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    # A timing on a shared CPU judges nothing here ("inf"); tests/gpu/checks.py judges it on a GPU.
    argv = ["--layers", "1", "--size", "64x64x1", "--steps", "4", "--target", "inf"]
    code, [report] = run_gpu_script("step_speed.py", argv, capsys)
    assert report["check"] == "step_speed" and report["device"] == "cpu" and report["steps"] == 4
    assert report["plain_step_s"] > 0 and report["farm_step_s"] > 0
    overhead = report["farm_step_s"] / report["plain_step_s"] - 1
    assert report["overhead"] == pytest.approx(overhead, abs=2e-3)
    assert report["ok"] is True and code == 0
