"""Kandinsky 5 Lite I2V (WanGP's k5_lite_i2v) has no Diffusers folder of its own: the catalogue's
kandinsky5-lite-i2v loads WanGP's transformer file over Lite T2V's folder behind
Kandinsky5I2VPipeline (models/presets/kandinsky5-lite-i2v.json). In tiny: a file in the original
layout over the tiny text-to-video folder (k5-tiny) renders what the same file over the tiny
image-to-video folder (k5-i2v-tiny) renders, and the definitions of WanGP's Lite I2V load their file,
or the model's, over the Lite T2V folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.catalogue import ModelPreset, catalogue, definitions_in, get_model
from models.runner import PipelineHost
from models.tiny_kandinsky5 import k5_transformer, write_k5_single_file
from models.wangp_definitions import own_weights
from models.weights import WeightCache
from tests.served_definitions import served_file
from tests.tiny_requests import tiny_wan_request
from tests.torch_threads import one_torch_thread

FILE = "kandinsky5lite_i2v_tiny_bf16.safetensors"
LITE_FILE = "kandinsky5lite_i2v_5s_bf16.safetensors"  # defaults/k5_lite_i2v.json at Wan2GP 8681e9f7


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def over(folder_of: str, url: str) -> ModelPreset:
    """kandinsky5-lite-i2v as the catalogue holds it, its file and the folder it loads over swapped
    for tiny ones."""
    lite = get_model("kandinsky5-lite-i2v")
    return lite.model_copy(
        update={"id": f"lite-i2v-over-{folder_of}", "derived_from": folder_of, "wangp_weights": [url]}
    )


def test_the_file_over_the_text_to_video_folder_renders_the_image_to_video_model(tmp_path: Path) -> None:
    moved = k5_transformer()
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    Image.new("RGB", (48, 32), (230, 40, 30)).save(tmp_path / "start.png")
    request = tiny_wan_request(
        width=48,
        height=32,
        frames=17,
        guidance_scale=5.0,
        flow_shift=10.0,
        sample_solver="euler",
        image_start=tmp_path / "start.png",
    )
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    body = write_k5_single_file(tmp_path / FILE, moved).read_bytes()
    with served_file(FILE, body) as url:
        lite = host.generate(over("k5-tiny", url), request)
        reference = host.generate(over("k5-i2v-tiny", url), request)
    plain = host.generate(get_model("k5-i2v-tiny"), request)
    assert lite.info.model_file == FILE and lite.frames.shape == (1, 17, 32, 48, 3)
    assert np.array_equal(lite.frames, reference.frames)
    assert not np.array_equal(lite.frames, plain.frames)  # the file's weights, not the folder's


def test_lite_i2v_definitions_load_their_file_over_the_lite_t2v_folder(tmp_path: Path) -> None:
    own = {"model": {"architecture": "k5_lite_i2v", "URLs": [LITE_FILE]}, "video_length": 81}
    finetune = {"model": {"architecture": "k5_lite_i2v", "URLs": ["k5_lite_i2v_finetune_bf16.safetensors"]}}
    same_file = {"model": {"architecture": "k5_lite_i2v", "URLs": [LITE_FILE]}, "num_inference_steps": 20}
    for name, data in {"k5_lite_i2v": own, "k5_lite_i2v_ft": finetune, "k5_lite_i2v_20": same_file}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    verdicts = {v.id: v for v in definitions_in(tmp_path, catalogue())}
    assert verdicts["k5_lite_i2v"].catalogue_own and verdicts["k5_lite_i2v"].preset == get_model(
        "kandinsky5-lite-i2v"
    )
    for name, file in (
        ("k5_lite_i2v_ft", "k5_lite_i2v_finetune_bf16.safetensors"),
        ("k5_lite_i2v_20", LITE_FILE),
    ):
        preset = verdicts[name].preset
        assert preset is not None and preset.pipeline == "Kandinsky5I2VPipeline"
        assert preset.derived_from == "kandinsky5-lite-t2v"
        assert [url.rsplit("/", 1)[-1] for url in own_weights(preset)] == [file]
    assert verdicts["k5_lite_i2v_20"].preset is not None
    assert verdicts["k5_lite_i2v_20"].preset.defaults.num_inference_steps == 20
