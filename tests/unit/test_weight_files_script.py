"""tests/gpu/weight_files.py on the CPU, where a definition's bf16 file loads (an int8 one needs CUDA):
a tiny Wan and a tiny HunyuanVideo finetune, each in its original key layout, render through the
pipeline host as the same weights in a diffusers folder render; a file of other weights fails."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.gpu_scripts import GPU, run_gpu_script

SCRIPT = "weight_files.py"


def test_a_finetunes_file_renders_as_its_weights_in_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_gpu_script(SCRIPT, ["--dir", str(tmp_path)], capsys)
    assert [(line["model"], line["profile"], line["loaded"], line["int8"]) for line in lines] == [
        ("wan_tiny_finetune", "none (cpu)", "wan_tiny_finetune_mbf16.safetensors", False),
        ("hunyuan_tiny_finetune", "none (cpu)", "hunyuan_tiny_finetune_mbf16.safetensors", False),
    ]
    for line in lines:
        assert line["off_folder"] == 0 and line["off_base"] > 0.2 and line["ok"] is True
    assert code == 0


def test_a_file_of_other_weights_than_the_folders_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = runpy.run_path(str(GPU / SCRIPT))
    write, nudge = script["_write_files"], script["_nudge"]

    def written_after_another_nudge(family: str, transformer: Any, folder: Path) -> tuple[Path, Path]:
        nudge(transformer)
        return write(family, transformer, folder)

    code, [line] = run_gpu_script(
        SCRIPT,
        ["--families", "wan", "--dir", str(tmp_path)],
        capsys,
        _write_files=written_after_another_nudge,
    )
    assert line["loaded"] == "wan_tiny_finetune_mbf16.safetensors" and line["off_folder"] > 0.1
    assert line["ok"] is False and code == 1
