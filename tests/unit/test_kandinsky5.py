"""Kandinsky 5 (Lite and Pro, T2V and I2V): WanGP's k5_* definitions (Wan2GP 8681e9f7, the fixture)
as catalogue models, its k5_config_overrides, the tiny models' prompt template cut, and its
transformer files in the original layout loaded through the farm's single-file loader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import Task, get_model
from models.kandinsky5_layout import kandinsky5_layout, overrides_problem
from models.request import GenerationRequest
from models.single_file import SingleFileRefused, load_pipeline
from models.tiny import build_tiny
from models.tiny_kandinsky5 import K5_DROP_TOKENS, K5_TEMPLATE, k5_transformer, write_k5_single_file
from models.wangp_definitions import decide, parse_definition
from tests.torch_threads import one_torch_thread

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
K5_IDS = (
    "k5_lite_t2v",
    "k5_lite_t2v_5s_distil",
    "k5_lite_t2v_10s_distil",
    "k5_lite_t2v_10s_distil_sparse",
    "k5_pro_t2v",
    "k5_pro_t2v_10s_sft",
    "k5_pro_t2v_10s_sft_sparse",
    "k5_lite_i2v",
    "k5_pro_i2v",
)
# 32x32, 5 frames, 2 steps: the tiny HunyuanVideo VAE's decode is most of a render's time.
REQUEST = GenerationRequest("a red fox in the snow", "blurry", 32, 32, 5, 2, 5.0, 10.0, "euler", 7)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def definitions() -> dict[str, Any]:
    return dict(json.loads(FIXTURE.read_text())["definitions"])


def verdict(model_id: str) -> Any:
    from models.catalogue import _own_presets

    return decide(parse_definition(model_id, definitions()[model_id]), _own_presets())


def test_the_served_definitions_keep_their_own_defaults_and_files() -> None:
    served = {model_id: verdict(model_id) for model_id in K5_IDS}
    assert {model_id for model_id, v in served.items() if v.preset is not None} == {
        "k5_lite_t2v",
        "k5_lite_t2v_5s_distil",
        "k5_lite_t2v_10s_distil",
        "k5_pro_t2v",
        "k5_pro_t2v_10s_sft",
        "k5_pro_i2v",
        "k5_lite_i2v",
    }
    # The architectures' own definitions are the catalogue's models.
    assert served["k5_pro_i2v"].catalogue_own and served["k5_pro_i2v"].preset.task is Task.I2V
    distil = served["k5_lite_t2v_10s_distil"].preset
    assert distil.derived_from == "kandinsky5-lite-t2v" and distil.pipeline == "Kandinsky5T2VPipeline"
    assert (distil.defaults.num_inference_steps, distil.defaults.guidance_scale) == (16, 1.0)
    assert (distil.defaults.video_length, distil.defaults.flow_shift) == (161, 10.0)
    assert distil.frames is not None and distil.frames.allows(161)
    assert distil.wangp_weights == ["kandinsky5lite_t2v_distilled16steps_10s_bf16.safetensors"]
    assert served["k5_pro_t2v_10s_sft"].preset.derived_from == "kandinsky5-pro-t2v"
    # Lite I2V has no Diffusers folder: WanGP's file over Lite T2V's, behind the I2V pipeline.
    lite_i2v = served["k5_lite_i2v"]
    assert lite_i2v.catalogue_own and lite_i2v.preset.pipeline == "Kandinsky5I2VPipeline"
    assert lite_i2v.preset.derived_from == "kandinsky5-lite-t2v"


def test_the_definitions_that_stay_refused_name_what_is_missing() -> None:
    for model_id in ("k5_lite_t2v_10s_distil_sparse", "k5_pro_t2v_10s_sft_sparse"):
        assert verdict(model_id).reason == (
            "model setting k5_config_overrides.model.attention: "
            "NABLA sparse attention (flex) is not supported yet"
        )


def test_config_overrides_honoured_only_where_nothing_rendered_changes() -> None:
    # WanGP's generate() passes flow_shift as the scheduler scale: metrics.scheduler_scale is inert.
    assert overrides_problem(None) == overrides_problem({}) == ""
    assert overrides_problem({"metrics": {"scheduler_scale": 5}}) == ""
    assert overrides_problem({"metrics": {"scale_factor": [1, 3.16, 3.16]}}) == (
        "k5_config_overrides.metrics.scale_factor is not supported yet"
    )
    assert overrides_problem({"model": {"dit_params": {"model_dim": 1}}}) == (
        "k5_config_overrides.model is not supported yet"
    )
    assert "flash" in overrides_problem({"model": {"attention": {"type": "flash"}}})
    assert overrides_problem([1]).startswith("k5_config_overrides must be an object")


def test_the_layout_strips_the_prefix_wangp_strips_and_keeps_the_rest() -> None:
    assert kandinsky5_layout({"out_layer.out_layer.bias": 1}) == {"out_layer.out_layer.bias": 1}
    assert kandinsky5_layout({"model.diffusion_model.a.weight": 1, "model.diffusion_model.b": 2}) == {
        "a.weight": 1,
        "b": 2,
    }
    # A key outside the prefix keeps its name, so the key check names it.
    assert kandinsky5_layout({"diffusion_model.a": 1, "stray": 2}) == {"a": 1, "stray": 2}


@pytest.fixture(scope="module")
def k5_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("k5-tiny")
    build_tiny(get_model("k5-tiny"), folder)
    return folder


def render(pipe: Any, preset_id: str, request: GenerationRequest) -> np.ndarray:
    preset = get_model(preset_id)
    pipe.set_progress_bar_config(disable=True)
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    return np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).frames)


def test_the_template_prefix_is_the_tokens_the_pipeline_drops(k5_folder: Path) -> None:
    from diffusers import Kandinsky5T2VPipeline

    pipe = Kandinsky5T2VPipeline.from_pretrained(k5_folder)
    # The tiny vocabulary was fitted to this template: a diffusers upgrade that changes it fails here.
    assert pipe.prompt_template == K5_TEMPLATE
    assert pipe.prompt_template_encode_start_idx == K5_DROP_TOKENS
    prefix = pipe.tokenizer(K5_TEMPLATE.split("{}")[0]).input_ids
    assert len(prefix) == K5_DROP_TOKENS
    for prompt in ["a cat", " leading space", "\nnewline first", "émigré", ""]:
        ids = pipe.tokenizer(K5_TEMPLATE.format(prompt)).input_ids
        assert ids[:K5_DROP_TOKENS] == prefix
        assert pipe.tokenizer.decode(ids[K5_DROP_TOKENS:]) == prompt + "<|im_end|>"


def test_a_file_in_the_original_layout_renders_as_its_weights(k5_folder: Path, tmp_path: Path) -> None:
    from diffusers import Kandinsky5T2VPipeline

    preset = get_model("k5-tiny")
    folder_frames = render(Kandinsky5T2VPipeline.from_pretrained(k5_folder), "k5-tiny", REQUEST)
    path = write_k5_single_file(tmp_path / "k5.safetensors")
    assert render(load_pipeline(preset, path, torch.float32, k5_folder), "k5-tiny", REQUEST).tobytes() == (
        folder_frames.tobytes()
    )
    # A checkpoint saved from a wrapper (a prefix WanGP strips) loads the same tensors.
    prefixed = write_k5_single_file(tmp_path / "prefixed.safetensors", prefix="model.diffusion_model.")
    assert_same_state(load_pipeline(preset, prefixed, torch.float32, k5_folder).transformer, k5_transformer())

    # Other weights in the same layout are those weights, and render other frames.
    moved = k5_transformer()
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    pipe = load_pipeline(
        preset, write_k5_single_file(tmp_path / "moved.safetensors", moved), torch.float32, k5_folder
    )
    assert_same_state(pipe.transformer, moved)
    assert render(pipe, "k5-tiny", REQUEST).tobytes() != folder_frames.tobytes()


def assert_same_state(loaded: Any, expected: Any) -> None:
    got, want = loaded.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[key], want[key]) for key in want)


def test_a_file_that_does_not_fit_is_refused_naming_its_keys(k5_folder: Path, tmp_path: Path) -> None:
    state = k5_transformer().state_dict()
    state.pop("out_layer.out_layer.bias")
    state["visual_transformer_blocks.0.extra.weight"] = torch.zeros(1)
    save_file({key: value.contiguous() for key, value in state.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(
        SingleFileRefused, match=r"lacks 1 key\(s\): out_layer.out_layer.bias; it has unknown"
    ):
        load_pipeline(get_model("k5-tiny"), tmp_path / "bad.safetensors", torch.float32, k5_folder)


def test_the_i2v_model_starts_from_the_image(tmp_path: Path) -> None:
    build_tiny(get_model("k5-i2v-tiny"), tmp_path / "i2v")
    from diffusers import Kandinsky5I2VPipeline

    pipe = Kandinsky5I2VPipeline.from_pretrained(tmp_path / "i2v")
    frames = {}
    # 17 frames: the pipeline evens out the first four latent frames against the next ones.
    for colour in ((230, 40, 30), (20, 60, 220)):
        Image.new("RGB", (32, 32), colour).save(tmp_path / "start.png")
        request = replace(REQUEST, frames=17, image_start=tmp_path / "start.png")
        frames[colour] = render(pipe, "k5-i2v-tiny", request)
    assert frames[(230, 40, 30)].shape == (1, 17, 32, 32, 3)
    assert all(np.isfinite(video).all() for video in frames.values())
    # The start image is the first frame's latents: a red start is redder than a blue one.
    red, blue = frames[(230, 40, 30)][0, 0].mean(axis=(0, 1)), frames[(20, 60, 220)][0, 0].mean(axis=(0, 1))
    assert red[0] - red[2] > blue[0] - blue[2]
    with pytest.raises(ValueError, match="needs a start image"):
        render(pipe, "k5-i2v-tiny", REQUEST)
    assert not get_model("k5-i2v-tiny").frames.allows(13)  # type: ignore[union-attr]
