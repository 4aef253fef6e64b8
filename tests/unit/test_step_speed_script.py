"""tests/gpu/step_speed.py on CPU with one layer of Wan 1.3B: the same pipeline renders plain and
through the pipeline host, and the report gives each side's step and the farm's overhead."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "gpu" / "step_speed.py"


def test_the_step_check_times_both_sides_of_the_same_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(SCRIPT))["main"]
    # A timing on a shared CPU judges nothing here ("inf"); tests/gpu/checks.py judges it on a GPU.
    code = main(["--layers", "1", "--size", "64x64x1", "--steps", "4", "--target", "inf"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    report = json.loads(line)
    assert report["check"] == "step_speed" and report["device"] == "cpu" and report["steps"] == 4
    assert report["plain_step_s"] > 0 and report["farm_step_s"] > 0
    overhead = report["farm_step_s"] / report["plain_step_s"] - 1
    assert report["overhead"] == pytest.approx(overhead, abs=2e-3)
    assert report["ok"] is True and code == 0
