"""WanGP's int8 quanto Wan files through the farm's mmgp loader: the tiny Wan transformer quantized by
optimum-quanto and written in Wan's original key layout with its quantization map in the metadata
(which mmgp hands to the rename hook as the undecoded JSON string) loads into the very model quanto
quantizes. mmgp's loading runs on the CPU; only the farm's own check asks for CUDA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.catalogue import get_model
from models.quanto_rows import quantized_original
from models.single_file import LAYOUTS, load_transformer, quanto_installed
from models.tiny import build_tiny, wan_to_original, wan_transformer
from models.tiny_hunyuan_video import quantized
from tests.torch_threads import one_torch_thread

TINY = get_model("wan-tiny")

pytestmark = pytest.mark.skipif(not quanto_installed(), reason="mmgp and optimum-quanto read int8 files")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_an_int8_wan_file_loads_as_the_model_quanto_quantizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_tiny(TINY, tmp_path / "folder")
    reference = quantized(wan_transformer())
    state, modules = quantized_original(reference, wan_to_original, LAYOUTS["WanTransformer3DModel"].convert)
    path = tmp_path / "wan_tiny_quanto_mbf16_int8.safetensors"
    metadata = {"quantization_map": json.dumps(modules)}
    save_file({key: value.contiguous() for key, value in state.items()}, str(path), metadata=metadata)
    with safe_open(str(path), framework="pt") as handle:
        assert "blocks.0.self_attn.q.weight._data" in handle.keys()  # noqa: SIM118 (a handle)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loaded = load_transformer(TINY, path, torch.float32, tmp_path / "folder").state_dict()
    expected = reference.state_dict()
    assert loaded.keys() == expected.keys()
    assert [key for key in expected if not torch.equal(loaded[key], expected[key])] == []
