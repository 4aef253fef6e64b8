"""tests/gpu/lora_mmgp.py on the CPU, where the pipeline host applies LoRAs with diffusers' PEFT
adapters: a tiny Wan and a tiny Qwen-Image render with their LoRA as the weights it is fused into
render, at both weights; and the check fails when a weight other than the one asked runs, or when
the adapters stay on after the job."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from models.lora_adapters import PeftAdapters
from tests.gpu_scripts import GPU, run_gpu_script

SCRIPT = "lora_mmgp.py"


def test_a_lora_renders_as_the_weights_it_is_fused_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_gpu_script(SCRIPT, ["--families", "wan,qwen-image", "--dir", str(tmp_path)], capsys)
    assert [(line["family"], line["profile"], line["adapters"]) for line in lines] == [
        ("wan", "none (cpu)", "PeftAdapters"),
        ("qwen-image", "none (cpu)", "PeftAdapters"),
    ]
    for line in lines:
        assert line["applied"] == ["tiny-lora.safetensors"] and line["effect"] > 0.4
        assert set(line["off_fused"]) == {"1", "0.5"} and max(line["off_fused"].values()) < 1e-4
        assert line["clean"] == 0 and line["ok"] is True
    assert code == 0


def test_a_lora_run_at_another_weight_than_asked_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = runpy.run_path(str(GPU / SCRIPT))
    fuse = script["_cache_fused"]

    def fused_at_one(cache: Any, preset: Any, folder: Path, lora: Path, weight: float) -> None:
        fuse(cache, preset, folder, lora, 1.0)  # the reference the asked weight would not reach

    code, [line] = run_gpu_script(
        SCRIPT, ["--families", "wan", "--dir", str(tmp_path)], capsys, _cache_fused=fused_at_one
    )
    assert line["off_fused"]["1"] < 1e-4 < 0.1 * line["effect"] < line["off_fused"]["0.5"]
    assert line["ok"] is False and code == 1


def test_adapters_left_on_after_the_job_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PeftAdapters, "switch_off", lambda self: None)
    code, [line] = run_gpu_script(SCRIPT, ["--families", "wan", "--dir", str(tmp_path)], capsys)
    assert line["clean"] > 0.1 and line["ok"] is False and code == 1
