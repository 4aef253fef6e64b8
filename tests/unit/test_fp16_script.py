"""tests/gpu/fp16.py on CPU with one layer of Wan 1.3B: fp16's output is finite and no further from
fp32's than bf16's is (x1.5), as a card without bf16 would compute it."""

from __future__ import annotations

import pytest

from tests.gpu_scripts import run_gpu_script


def test_fp16_is_as_close_to_fp32_as_bf16_on_a_block_of_wan_1_3b(capsys: pytest.CaptureFixture[str]) -> None:
    code, [report] = run_gpu_script("fp16.py", ["--layers", "1", "--size", "64x64x1"], capsys)
    assert report["check"] == "fp16_transformer" and report["device"] == "cpu"
    assert report["finite"] == {"bf16": True, "fp16": True}
    errors = report["relative_error_vs_fp32"]
    assert 0 < errors["fp16"] <= 1.5 * errors["bf16"] < 0.05
    assert report["ok"] is True and code == 0
