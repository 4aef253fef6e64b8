"""tests/gpu/cold_start.py on CPU with one layer of Wan 1.3B: it writes the transformer as diffusers
does, measures the raw read and the load of the same bytes, reports them, and leaves nothing."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.gpu_scripts import GPU, run_gpu_script


def test_the_cold_start_check_reports_the_load_against_the_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, [report] = run_gpu_script("cold_start.py", ["--dir", str(tmp_path), "--layers", "1"], capsys)
    # One block of the 1.3B (its embeddings and head included) in bf16: 144,437,064 bytes.
    assert report["check"] == "cold_start" and report["device"] == "cpu" and report["layers"] == 1
    assert report["bytes"] == 144_437_064
    assert report["raw_gb_per_s"] > 0 and report["load_gb_per_s"] > 0
    share = report["load_gb_per_s"] / report["raw_gb_per_s"]
    assert report["share_of_raw"] == pytest.approx(share, rel=0.01)
    assert report["ok"] is (report["share_of_raw"] >= report["target"]) and code == (0 if report["ok"] else 1)
    assert list(tmp_path.iterdir()) == []  # the files are gone


def test_without_room_for_the_files_there_is_nothing_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**8))  # 0.1 GB
    main = runpy.run_path(str(GPU / "cold_start.py"))["main"]
    assert main(["--dir", str(tmp_path), "--layers", "1"]) == 3
    err = capsys.readouterr().err
    assert "0.1 GB free, 0.2 GB needed" in err
    assert list(tmp_path.iterdir()) == []
