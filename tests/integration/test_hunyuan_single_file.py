"""HunyuanVideo transformers from WanGP's single files, in HunyuanVideo's original key layout
(models.hunyuan_layout, read from WanGP's models/hyvideo/modules/models.py at deepbeepmeep/Wan2GP
8681e9f7: fused img/txt qkv, linear1 = q, k, v and the MLP input), float and int8 quanto.

The tiny HunyuanVideo (models.tiny.tiny_hunyuan) is saved as the hunyuan-video-t2v-13b preset's
folder. Its transformer written in the original layout loads into the folder's very weights, and a
definition naming such a file renders the folder's frames. WanGP's int8 files (its accvideo and
fast finetunes ship nothing else) are optimum-quanto rows and per-row scales: the layout cuts them
along the rows as mmgp cuts WanGP's quantized modules, so the file loads through mmgp into the
model quanto quantizes from the same weights, for HunyuanVideo and HunyuanVideo 1.5 alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.catalogue import catalogue, get_model
from models.hunyuan15_layout import hunyuan15_to_diffusers, hunyuan15_to_original
from models.hunyuan_layout import hunyuan_to_original
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.single_file import SingleFileRefused, load_transformer, quanto_installed
from models.tiny import build_tiny, tiny_hunyuan
from models.tiny_hunyuan15 import transformer as hunyuan15_transformer
from models.tiny_hunyuan_video import quantized, transformer, write_int8_single_file, write_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from tests.served_definitions import served_file
from tests.tiny_requests import cache_as
from tests.torch_threads import one_torch_thread

PRESET = get_model("hunyuan-video-t2v-13b")
FILE = "hunyuan_tiny_finetune_bf16.safetensors"
REQUEST = GenerationRequest("a red fox in the snow", "", 64, 64, 5, 2, 6.0, 7.0, "euler", 7)
TINY_WIDTH = 32  # tiny_hunyuan's transformer: 2 heads of 16
QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
needs_quanto = pytest.mark.skipif(not quanto_installed(), reason="mmgp and optimum-quanto read int8 files")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> WeightCache:
    """A weight cache holding the tiny HunyuanVideo as HunyuanVideo T2V 13B."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    cache_as(cache, PRESET, tiny_hunyuan())
    return cache


@pytest.fixture(scope="module")
def folder(cache: WeightCache) -> Path:
    return cache.folder(PRESET)


def test_the_file_has_wangps_names_and_loads_into_the_folders_weights(folder: Path, tmp_path: Path) -> None:
    path = write_single_file(tmp_path / FILE)
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        linear1 = handle.get_tensor("single_blocks.0.linear1.weight")
    # WanGP's module names: HYVideo-T/2-cfgdistill with its q, k, v fused.
    for name in (
        "double_blocks.0.img_attn_qkv.weight",
        "double_blocks.0.txt_attn_qkv.bias",
        "double_blocks.0.img_mod.linear.weight",
        "single_blocks.0.linear2.weight",
        "txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight",
        "vector_in.in_layer.weight",
        "guidance_in.mlp.0.weight",
        "final_layer.adaLN_modulation.1.weight",
    ):
        assert name in keys
    assert not any(key.startswith(("transformer_blocks.", "context_embedder")) for key in keys)
    width = TINY_WIDTH
    assert linear1.shape == (3 * width + 4 * width, width)  # q, k, v and the MLP input (ratio 4)

    loaded = load_transformer(PRESET, path, torch.float32, folder)
    expected = transformer().state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in expected.items())


def test_the_layout_reads_the_original_names_as_diffusers_own_converter_does() -> None:
    # diffusers' converter fixes linear1's cut at the 13B's width (3072): every other tensor is
    # compared with it, and linear1's rows are checked to be q, k, v and the MLP input in order.
    model = transformer().state_dict()
    original = hunyuan_to_original(model)
    linear1 = original.pop("single_blocks.0.linear1.weight")
    original.pop("single_blocks.0.linear1.bias")
    theirs = convert_hunyuan_video_transformer_to_diffusers(dict(original))
    block = "single_transformer_blocks.0."
    cut = {f"{block}{name}.{field}" for name in (*QKV, "proj_mlp") for field in ("weight", "bias")}
    assert theirs.keys() == model.keys() - cut
    assert all(torch.equal(value, model[key]) for key, value in theirs.items())
    rows = [model[f"{block}{name}.weight"] for name in (*QKV, "proj_mlp")]
    assert torch.equal(linear1, torch.cat(rows))


def test_a_file_missing_a_key_is_refused_naming_it(folder: Path, tmp_path: Path) -> None:
    state = load_file(str(write_single_file(tmp_path / "full.safetensors")))
    del state["double_blocks.0.img_attn_proj.weight"]
    save_file(state, str(tmp_path / "cut.safetensors"))
    with pytest.raises(
        SingleFileRefused, match=r"lacks 1 key\(s\): transformer_blocks\.0\.attn\.to_out\.0\.weight"
    ):
        load_transformer(PRESET, tmp_path / "cut.safetensors", torch.float32, folder)


@pytest.fixture
def as_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The int8 path checks for CUDA before it asks mmgp to load; mmgp's loading itself runs here."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@needs_quanto
def test_an_int8_file_loads_as_the_model_quanto_quantizes(
    folder: Path, tmp_path: Path, as_on_cuda: None
) -> None:
    reference = quantized(transformer())
    path = write_int8_single_file(tmp_path / "hunyuan_tiny_quanto_int8.safetensors", reference)
    with safe_open(str(path), framework="pt") as handle:
        assert "double_blocks.0.img_attn_qkv.weight._data" in handle.keys()  # noqa: SIM118 (a handle)
        assert "single_blocks.0.linear1" in json.loads(handle.metadata()["quantization_map"])
    loaded = load_transformer(PRESET, path, torch.float32, folder)
    assert_same_quantized(loaded, reference)
    with torch.no_grad():
        ours, theirs = (model(**transformer_inputs()).sample for model in (loaded, reference))
    assert torch.equal(ours, theirs)


@needs_quanto
def test_an_int8_file_without_its_map_loads_the_same(folder: Path, tmp_path: Path, as_on_cuda: None) -> None:
    # WanGP's fast finetune keeps its quantization map in a _map.json beside the file: read without
    # it, every module with int8 rows is quanto's int8 weights.
    reference = quantized(transformer())
    path = write_int8_single_file(tmp_path / "with_map.safetensors", reference)
    save_file(load_file(str(path)), str(tmp_path / "fast_quanto_int8.safetensors"))
    loaded = load_transformer(PRESET, tmp_path / "fast_quanto_int8.safetensors", torch.float32, folder)
    assert_same_quantized(loaded, reference)


@needs_quanto
def test_a_hunyuan_1_5_int8_file_loads_as_the_model_quanto_quantizes(
    tmp_path: Path, as_on_cuda: None
) -> None:
    # WanGP's step-distilled 1.5 i2v lists its int8 file first: WanGP loads it on every profile.
    tiny = get_model("hunyuan15-tiny")
    build_tiny(tiny, tmp_path / "folder")
    reference = quantized(hunyuan15_transformer())
    layout = (hunyuan15_to_original, hunyuan15_to_diffusers)
    path = write_int8_single_file(tmp_path / "hy15_quanto_bf16_int8.safetensors", reference, layout)
    with safe_open(str(path), framework="pt") as handle:
        assert "txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight._data" in handle.keys()  # noqa: SIM118
    assert_same_quantized(load_transformer(tiny, path, torch.float32, tmp_path / "folder"), reference)


def assert_same_quantized(loaded: Any, reference: Any) -> None:
    """The same modules quantized, with the same int8 rows, scales and float tensors."""
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert any(key.endswith("attn.to_q.weight._data") for key in ours)
    assert [key for key in theirs if not torch.equal(ours[key], theirs[key])] == []


def transformer_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, 1, 4, 4, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator),
        "encoder_attention_mask": torch.ones(1, 6),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "guidance": torch.tensor([6000.0]),
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback server holding the tiny transformer as a WanGP file; its URL."""
    with served_file(FILE, write_single_file(tmp_path / FILE).read_bytes()) as url:
        yield url


def test_a_definition_with_its_own_file_renders_the_frames_of_the_same_weights(
    served: str, cache: WeightCache
) -> None:
    definition = {"model": {"architecture": "hunyuan", "URLs": [served]}, "flow_shift": 7}
    verdict = decide(parse_definition("hunyuan_tiny_finetune", definition), catalogue())
    assert verdict.preset is not None, verdict.reason
    preset = verdict.preset
    assert preset.derived_from == PRESET.id and own_weights(preset) == (served,)
    host = PipelineHost(cache)
    from_file = host.generate(preset, REQUEST)
    assert from_file.info.model_file == FILE and from_file.info.weights_source == "download"
    from_folder = host.generate(PRESET, REQUEST)
    assert from_folder.info.model_file == "" and host.loads == 2
    assert np.array_equal(from_file.frames, from_folder.frames)
