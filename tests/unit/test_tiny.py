"""The tiny offline pipelines: they build, load back through from_pretrained, generate, and match
their presets; and the request-to-call mapping drives them."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from models.audio_call import waveforms
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import ModelPreset, Output, get_model
from models.image_pipes import pipeline_for
from models.qwen_processor import QWEN_VL_PIPELINES
from models.request import GenerationRequest
from models.tiny import QWEN_DROP_TOKENS, QWEN_TEMPLATE, build_tiny, component_bytes

TINY = [
    "wan-tiny",
    "ltx-tiny",
    "flux-tiny",
    "qwen-image-tiny",
    "flux-kontext-tiny",
    "flux2-klein-tiny",
    "flux2-dev-tiny",
    "hunyuan15-tiny",
    "wan-vace-tiny",
    "ltx2-tiny",
    "skyreels-df-tiny",
    "stable-audio3-tiny",
    "ace-step-tiny",
    "z-image-tiny",
    "z-image-control-tiny",
    "qwen-image-edit-tiny",
    "qwen-image-edit-plus-tiny",
    "k5-tiny",
    "krea2-tiny",
    "ideogram4-tiny",
    "chroma-tiny",
]


def default_request(preset: ModelPreset, **changes: Any) -> GenerationRequest:
    width, height = (int(side) for side in preset.defaults.resolution.split("x"))
    request = GenerationRequest(
        prompt="a red fox running through a snowy forest",
        negative_prompt="blurry, low quality",
        width=width,
        height=height,
        frames=preset.defaults.video_length if preset.output is Output.VIDEO else 1,
        steps=preset.defaults.num_inference_steps,
        guidance_scale=preset.defaults.guidance_scale,
        flow_shift=preset.defaults.flow_shift,
        sample_solver=preset.defaults.sample_solver,
        seed=42,
        duration_seconds=preset.audio.default_seconds if preset.audio else None,
    )
    return replace(request, **changes)


def generate(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> np.ndarray:
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    # The call the runner makes: the pipeline itself, or one over it (models.image_pipes).
    call = pipeline_for(pipe, preset, request)
    result = call(**pipeline_kwargs(call, preset, request, generator))
    if preset.output is Output.AUDIO:  # (outputs, channels, samples) in [-1, 1]; ACE-Step's decoded here
        return np.stack([track.samples for track in waveforms(result, preset, call)])
    return np.asarray(result.frames if preset.output is Output.VIDEO else result.images)


def load(preset: ModelPreset, folder: Path) -> Any:
    pipe = getattr(diffusers, preset.pipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model built once for the module (a build is well under a second)."""
    folders = {}
    for model_id in TINY:
        folders[model_id] = tmp_path_factory.mktemp(model_id)
        build_tiny(get_model(model_id), folders[model_id])
    return folders


@pytest.mark.parametrize("model_id", TINY)
def test_builds_loads_and_generates_at_the_preset_defaults(
    model_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = get_model(model_id)
    assert preset.tiny and preset.repo is None
    started = time.monotonic()
    build_tiny(preset, tmp_path)
    built_at = time.monotonic()
    pipe = load(preset, tmp_path)
    loaded_at = time.monotonic()
    request = default_request(preset)
    if preset.pipeline in QWEN_VL_PIPELINES:  # an edit model renders from its input image
        Image.new("RGB", (64, 64), (200, 40, 30)).save(tmp_path / "input.png")
        request = replace(request, image_refs=(tmp_path / "input.png",))
    frames = generate(pipe, preset, request)
    done = time.monotonic()

    if preset.output is Output.VIDEO:
        assert frames.shape == (1, request.frames, request.height, request.width, 3)
    elif preset.audio is not None:
        seconds = request.duration_seconds or 0
        assert frames.shape == (1, preset.audio.channels, int(seconds * preset.audio.sample_rate))
    else:
        assert frames.shape == (1, request.height, request.width, 3)
    assert frames.dtype == np.float32
    assert np.isfinite(frames).all()
    assert frames.min() >= (-1.0 if preset.output is Output.AUDIO else 0.0) and frames.max() <= 1.0
    assert frames.std() > 0  # a real decode, not a constant image

    size = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert size < 20 * 2**20
    with capsys.disabled():
        print(
            f"\n{model_id}: {size / 1e6:.2f} MB, build {built_at - started:.2f} s, "
            f"load {loaded_at - built_at:.2f} s, generate {done - loaded_at:.2f} s"
        )


@pytest.mark.parametrize("model_id", TINY)
def test_preset_component_bytes_match_the_built_folder(model_id: str, built: dict[str, Path]) -> None:
    preset = get_model(model_id)
    on_disk = component_bytes(built[model_id])
    assert {c.name: c.bytes for c in preset.components} == {
        c.name: on_disk[c.name] for c in preset.components
    }
    assert all(c.dtype == "fp32" for c in preset.components)


@pytest.mark.parametrize("model_id", TINY)
def test_building_twice_gives_identical_weights(
    model_id: str, built: dict[str, Path], tmp_path: Path
) -> None:
    build_tiny(get_model(model_id), tmp_path)
    first = {p.relative_to(built[model_id]): p.read_bytes() for p in built[model_id].rglob("*.safetensors")}
    second = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.safetensors")}
    assert first and first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first), "a rebuild changed some weights"
    # The trained tokenizers must be stable too, or prompts would encode differently per node.
    for tokenizer_json in built[model_id].glob("tokenizer*/tokenizer.json"):
        assert (
            tokenizer_json.read_bytes()
            == (tmp_path / tokenizer_json.relative_to(built[model_id])).read_bytes()
        )


def test_same_seed_same_video_other_seed_other_video(built: dict[str, Path]) -> None:
    preset = get_model("wan-tiny")
    pipe = load(preset, built["wan-tiny"])
    request = default_request(preset)
    first = generate(pipe, preset, request)
    again = generate(pipe, preset, request)
    other = generate(pipe, preset, replace(request, seed=request.seed + 1))
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_batch_size_gives_that_many_outputs(built: dict[str, Path]) -> None:
    preset = get_model("flux-tiny")
    pipe = load(preset, built["flux-tiny"])
    images = generate(pipe, preset, default_request(preset, batch_size=2))
    assert images.shape == (2, 64, 64, 3)


def test_qwen_template_prefix_is_the_tokens_the_pipeline_drops(built: dict[str, Path]) -> None:
    pipe = load(get_model("qwen-image-tiny"), built["qwen-image-tiny"])
    # The tiny vocabulary was fitted to this template: a diffusers upgrade that changes it must fail here.
    assert pipe.prompt_template_encode == QWEN_TEMPLATE
    assert pipe.prompt_template_encode_start_idx == QWEN_DROP_TOKENS
    tokenizer = pipe.tokenizer
    prefix = tokenizer(QWEN_TEMPLATE.split("{}")[0]).input_ids
    assert len(prefix) == QWEN_DROP_TOKENS
    for prompt in ["a cat", " leading space", "\nnewline first", "日本語 and émigré", ""]:
        ids = tokenizer(QWEN_TEMPLATE.format(prompt)).input_ids
        assert ids[:QWEN_DROP_TOKENS] == prefix
        decoded = tokenizer.decode(ids[QWEN_DROP_TOKENS:])
        assert isinstance(decoded, str) and decoded.startswith(prompt + "<|im_end|>")


def test_configure_scheduler_refuses_an_unknown_solver(built: dict[str, Path]) -> None:
    preset = get_model("wan-tiny")
    pipe = load(preset, built["wan-tiny"])
    with pytest.raises(ValueError, match=r"'heun'.*unipc, euler, dpm\+\+"):
        configure_scheduler(pipe, preset, default_request(preset, sample_solver="heun"))


def test_scheduler_switches_keep_the_model_settings(built: dict[str, Path]) -> None:
    preset = get_model("wan-tiny")
    pipe = load(preset, built["wan-tiny"])
    configure_scheduler(pipe, preset, default_request(preset, sample_solver="euler", flow_shift=5.0))
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.scheduler.config.shift == 5.0
    configure_scheduler(pipe, preset, default_request(preset, sample_solver="dpm++", flow_shift=None))
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.flow_shift == 3.0  # the model's own, not the last job's
    assert pipe.scheduler.config.prediction_type == "flow_prediction"
    assert pipe.scheduler.config.use_flow_sigmas
    configure_scheduler(pipe, preset, default_request(preset))
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.flow_shift == 3.0


@pytest.mark.parametrize(
    ("model_id", "solver"),
    [
        ("wan-tiny", "euler"),
        ("wan-tiny", "dpm++"),
        ("flux-tiny", "unipc"),
        ("flux-tiny", "dpm++"),
        ("ltx-tiny", "unipc"),
        ("qwen-image-tiny", "unipc"),
    ],
)
def test_other_solvers_run(model_id: str, solver: str, built: dict[str, Path]) -> None:
    preset = get_model(model_id)
    pipe = load(preset, built[model_id])
    frames = generate(pipe, preset, default_request(preset, sample_solver=solver, steps=2))
    assert np.isfinite(frames).all()


@pytest.mark.parametrize("model_id", ["ltx-tiny", "qwen-image-tiny"])
def test_dpm_is_refused_where_the_pipeline_sets_its_own_sigmas(model_id: str, built: dict[str, Path]) -> None:
    preset = get_model(model_id)
    pipe = load(preset, built[model_id])
    with pytest.raises(ValueError, match="sets its own sigmas"):
        configure_scheduler(pipe, preset, default_request(preset, sample_solver="dpm++"))


def test_fixed_flow_shift_turns_off_dynamic_shifting(built: dict[str, Path]) -> None:
    preset = get_model("flux-tiny")
    pipe = load(preset, built["flux-tiny"])
    assert pipe.scheduler.config.use_dynamic_shifting
    configure_scheduler(pipe, preset, default_request(preset, flow_shift=2.0))
    assert pipe.scheduler.config.shift == 2.0
    assert not pipe.scheduler.config.use_dynamic_shifting
    # The pipeline's resolution-shift keys survive for the next job that leaves the shift unset.
    configure_scheduler(pipe, preset, default_request(preset, sample_solver="unipc"))
    assert pipe.scheduler.config.use_dynamic_shifting
    assert pipe.scheduler.config.get("base_image_seq_len") == 256


def test_call_kwargs_per_family() -> None:
    generator = torch.Generator("cpu")
    pipe: Any = None  # the mapping reads only the preset and the request
    qwen = pipeline_kwargs(
        pipe, get_model("qwen-image-tiny"), default_request(get_model("qwen-image-tiny")), generator
    )
    assert qwen["true_cfg_scale"] == 4.0 and "guidance_scale" not in qwen
    assert qwen["num_images_per_prompt"] == 1 and "num_frames" not in qwen
    ltx = pipeline_kwargs(pipe, get_model("ltx-tiny"), default_request(get_model("ltx-tiny")), generator)
    assert ltx["frame_rate"] == 24 and ltx["num_frames"] == 9 and ltx["num_videos_per_prompt"] == 1
    flux = pipeline_kwargs(pipe, get_model("flux-tiny"), default_request(get_model("flux-tiny")), generator)
    assert flux["guidance_scale"] == 3.5 and "negative_prompt" not in flux
    assert flux["output_type"] == "np" and flux["generator"] is generator


def test_wan22_s_two_experts_get_each_its_own_guidance_and_one_expert_models_one() -> None:
    generator = torch.Generator("cpu")
    pipe: Any = None  # the mapping reads only the preset and the request
    two = get_model("wan2.2-t2v-a14b")
    kwargs = pipeline_kwargs(
        pipe, two, default_request(two, guidance_scale=4.0, guidance_scale_2=3.0), generator
    )
    assert (kwargs["guidance_scale"], kwargs["guidance_scale_2"]) == (4.0, 3.0)
    one = get_model("wan-tiny")
    assert "guidance_scale_2" not in pipeline_kwargs(pipe, one, default_request(one), generator)
