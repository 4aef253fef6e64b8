"""From a GenerationRequest to a diffusers pipeline call: the sampler, the flow shift, the kwargs.

Each family's pipeline names the same ideas differently (guidance_scale vs true_cfg_scale,
num_videos_per_prompt vs num_images_per_prompt, LTX's frame_rate), and its schedulers keep the flow
shift under different keys (UniPC/DPM++ `flow_shift`, FlowMatchEuler `shift`). The differences live
in two small tables below, one row per family.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import torch

# Imported from their modules: diffusers' top-level names are typed as dummy classes under mypy.
from diffusers.configuration_utils import ConfigMixin
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
from PIL import Image

from models.audio_call import audio_kwargs, configure_audio_scheduler, is_audio
from models.catalogue import ModelPreset, Output, Task
from models.chroma_call import chroma_kwargs
from models.flow_schedulers import CausVidScheduler, LcmFlowScheduler
from models.flux_refs import flux_call_kwargs
from models.ideogram4_call import ideogram4_kwargs
from models.ltx2_call import ltx2_kwargs
from models.qwen_edit import qwen_edit_kwargs
from models.request import GenerationRequest
from models.samplers import solver_problem
from models.vace import vace_kwargs
from models.wan_offshoots import call_extras
from models.z_image_control import control_kwargs


@dataclass(frozen=True)
class _Solver:
    """A sampler as a scheduler class plus the settings that put it in flow-matching mode."""

    cls: type[ConfigMixin]
    flow_settings: Mapping[str, Any]
    shift_key: str  # the config key of a static flow shift


SOLVERS: dict[str, _Solver] = {
    "unipc": _Solver(
        UniPCMultistepScheduler, {"prediction_type": "flow_prediction", "use_flow_sigmas": True}, "flow_shift"
    ),
    "euler": _Solver(FlowMatchEulerDiscreteScheduler, {}, "shift"),
    # Euler too: its sigmas are the two-stage plan's (models.ltx2_render).
    "distilled_8_steps": _Solver(FlowMatchEulerDiscreteScheduler, {}, "shift"),
    "dpm++": _Solver(
        DPMSolverMultistepScheduler,
        {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "algorithm_type": "dpmsolver++"},
        "flow_shift",
    ),
    "causvid": _Solver(CausVidScheduler, {}, "shift"),
    "lcm": _Solver(LcmFlowScheduler, {}, "shift"),
}


@dataclass(frozen=True)
class _CallStyle:
    """How a family's pipeline spells the arguments of one call."""

    guidance_key: str  # where request.guidance_scale goes
    # Flux-dev and HunyuanVideo embed a distilled guidance scale and only apply a negative prompt
    # under true CFG (true_cfg_scale > 1), which the catalogue's settings never ask for.
    negative_prompt: bool = True
    frame_rate: bool = False  # LTX conditions its RoPE on the frame rate


CALL_STYLES: dict[str, _CallStyle] = {
    "wan": _CallStyle("guidance_scale"),
    "hunyuan": _CallStyle("guidance_scale", negative_prompt=False),
    "ltx": _CallStyle("guidance_scale", frame_rate=True),
    "flux": _CallStyle("guidance_scale", negative_prompt=False),
    # FLUX.2 dev embeds its guidance; Klein base runs true CFG on negative embeddings (models.flux_refs).
    "flux2": _CallStyle("guidance_scale", negative_prompt=False),
    "qwen-image": _CallStyle("true_cfg_scale"),
    # LTX-2 (audio and video): its guidance passes are set per call by models.ltx2_call.
    "ltx2": _CallStyle("guidance_scale", frame_rate=True),
    # HunyuanVideo 1.5: real CFG through its guider, which models.hunyuan15_call sets per job.
    "hunyuan15": _CallStyle("guidance_scale"),
    # Kandinsky 5: real CFG with a negative prompt; an i2v model's start image is `image`.
    "kandinsky5": _CallStyle("guidance_scale"),
    # Z-Image: CFG with a negative prompt (Turbo runs at guidance 0: one pass).
    "z-image": _CallStyle("guidance_scale"),
    # Krea 2: guidance_scale is the CFG scale minus one (0: one pass), as WanGP's guidance.
    "krea2": _CallStyle("guidance_scale"),
    # Ideogram 4: no negative prompt (its unconditional transformer sees no text); its per-step
    # guidance replaces the scale (models.ideogram4_call).
    "ideogram4": _CallStyle("guidance_scale", negative_prompt=False),
    # Chroma: real CFG (WanGP's guidance_scale), its prompts as embeddings (models.chroma_call).
    "chroma": _CallStyle("guidance_scale"),
}

# Each pipeline's scheduler config as loaded, so every job derives its sampler from the model's own
# settings, never from the previous job's choices.
_native_configs: WeakKeyDictionary[DiffusionPipeline, dict[str, Any]] = WeakKeyDictionary()


def _family_row(table: Mapping[str, Any], preset: ModelPreset) -> Any:
    try:
        return table[preset.family]
    except KeyError:
        raise ValueError(
            f"{preset.id}: no call mapping for family {preset.family!r}; known families: {', '.join(table)}"
        ) from None


@contextmanager
def _quiet_config_warnings() -> Iterator[None]:
    # Switching scheduler class carries keys the new class does not take (e.g. Flux's
    # base_image_seq_len, which the pipeline reads back from scheduler.config); diffusers warns about
    # each on every switch.
    config_logger = logging.getLogger("diffusers.configuration_utils")
    level = config_logger.level
    config_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        config_logger.setLevel(level)


def configure_scheduler(pipe: DiffusionPipeline, preset: ModelPreset, request: GenerationRequest) -> None:
    """Set the sampler (request.sample_solver: 'unipc' | 'euler' | 'dpm++', or on Wan 'causvid' |
    'lcm'; raise ValueError naming the allowed ones otherwise) and flow shift (request.flow_shift
    when not None) on pipe.scheduler, from the scheduler's own config so nothing else changes."""
    if is_audio(preset):  # its samplers are its scheduler's modes (models.audio_call)
        configure_audio_scheduler(pipe, preset, request)
        return
    problem = solver_problem(preset.family, preset.id, request.sample_solver, request.flow_shift)
    if problem:
        raise ValueError(problem)
    solver = SOLVERS[request.sample_solver]
    native = _native_configs.setdefault(pipe, dict(pipe.scheduler.config))
    settings: dict[str, Any] = dict(solver.flow_settings)
    if request.flow_shift is not None:
        settings[solver.shift_key] = request.flow_shift
        # A fixed shift replaces the resolution-dependent one (the pipeline's `mu` is then ignored).
        settings["use_dynamic_shifting"] = False
    else:
        native_shift = native.get("flow_shift", native.get("shift"))
        if native_shift is not None:
            settings[solver.shift_key] = native_shift
    with _quiet_config_warnings():
        pipe.scheduler = solver.cls.from_config(native, **settings)


def pipeline_kwargs(
    pipe: DiffusionPipeline, preset: ModelPreset, request: GenerationRequest, generator: torch.Generator
) -> dict[str, Any]:
    """Keyword arguments for pipe(...) for this family: prompt, negative_prompt, height, width,
    num_frames (video), num_inference_steps, guidance scale (Qwen-Image uses true_cfg_scale; Flux
    dev uses guidance_scale as distilled guidance; LTX also takes frame_rate),
    num_videos_per_prompt / num_images_per_prompt = request.batch_size, generator, output_type="np"."""
    if is_audio(preset):  # a waveform's call: duration, no picture size
        return audio_kwargs(preset, request, generator)
    style: _CallStyle = _family_row(CALL_STYLES, preset)
    video = preset.output is Output.VIDEO
    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "height": request.height,
        "width": request.width,
        "num_inference_steps": request.steps,
        style.guidance_key: request.guidance_scale,
        "num_videos_per_prompt" if video else "num_images_per_prompt": request.batch_size,
        "generator": generator,
        "output_type": "np",
    }
    if request.guidance_scale_2 is not None:
        kwargs["guidance_scale_2"] = request.guidance_scale_2  # diffusers' Wan 2.2 two-expert pipelines
    if style.negative_prompt:
        kwargs["negative_prompt"] = request.negative_prompt
    if video:
        kwargs["num_frames"] = request.frames
    if style.frame_rate:
        if preset.fps is None:
            raise ValueError(f"{preset.id}: {preset.pipeline} needs a frame rate, but the preset has no fps")
        kwargs["frame_rate"] = preset.fps
    if request.image_start is not None:
        if preset.task not in (Task.I2V, Task.TI2V):
            raise ValueError(f"{preset.id} is a {preset.task.value} model: it takes no start image")
        with Image.open(request.image_start) as image:
            kwargs["image"] = image.convert("RGB")
    elif preset.task is Task.I2V:
        raise ValueError(f"{preset.id} is an image-to-video model: it needs a start image")
    if request.image_end is not None:
        if not preset.end_image or request.image_start is None:
            raise ValueError(
                f"{preset.id} takes no end image: first-last-frame models take one after a start"
            )
        with Image.open(request.image_end) as image:
            kwargs["last_image"] = image.convert("RGB")
    # Wan offshoots with pipelines of their own (SkyReels DF, Lucy Edit) take more.
    kwargs.update(call_extras(preset, request))
    # FLUX Kontext / FLUX.2: reference images, Kontext's output size, Klein's negative prompt.
    kwargs.update(flux_call_kwargs(pipe, preset, request))
    kwargs.update(vace_kwargs(preset, request))  # VACE's control video, mask and reference images
    kwargs.update(ltx2_kwargs(pipe, preset, request))  # LTX-2: plain CFG, its prompt length
    kwargs.update(qwen_edit_kwargs(preset, request))  # Qwen-Image-Edit (Plus): its input images
    kwargs.update(ideogram4_kwargs(preset, request))  # Ideogram 4: per-step guidance, its schedule
    kwargs.update(chroma_kwargs(pipe, preset, request))  # Chroma: T5 unmasked, as WanGP reads it
    kwargs.update(control_kwargs(preset, request))  # Z-Image ControlNet: its control image and weight
    return kwargs


@contextmanager
def expert_switch(pipes: Sequence[Any], preset: ModelPreset, request: GenerationRequest) -> Iterator[None]:
    """While inside, each two-expert pipeline of `pipes` (Wan 2.2 A14B: the hot one, and the one
    called when it is another over the same modules) runs its low-noise expert at and below
    request.switch_threshold, as WanGP switches; each one's own boundary is back after, whatever
    happened. A request without a threshold leaves them as they are."""
    if request.switch_threshold is None:
        yield
        return
    unique = list({id(pipe): pipe for pipe in pipes}.values())
    owns = [getattr(pipe.config, "boundary_ratio", None) for pipe in unique]
    for pipe, own in zip(unique, owns, strict=True):
        if own is None or getattr(pipe, "transformer_2", None) is None:
            raise ValueError(f"switch_threshold: {preset.id} has one transformer, no second expert")
    try:
        for pipe in unique:
            boundary = _above(request.switch_threshold) / pipe.scheduler.config.num_train_timesteps
            pipe.register_to_config(boundary_ratio=boundary)
        yield
    finally:
        for pipe, own in zip(unique, owns, strict=True):
            pipe.register_to_config(boundary_ratio=own)


def _above(threshold: float) -> float:
    # diffusers runs the high-noise expert while t >= boundary, comparing in float32 (the
    # timesteps' type); WanGP runs the low-noise one from t <= threshold: the boundary is the
    # next float32 above the threshold.
    value = torch.tensor(threshold, dtype=torch.float32)
    return float(torch.nextafter(value, torch.tensor(torch.inf, dtype=torch.float32)))
