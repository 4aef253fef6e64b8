"""Audio models (Output.AUDIO): the duration a job renders, its pipeline call, its sampler and the
waveforms it returns.

WanGP's audio models (models/TTS/stable_audio3_handler.py at deepbeepmeep/Wan2GP@8681e9f7) take
`duration_seconds` (1 to the model's maximum: 120 s for Stable Audio 3 Small, 380 s for Medium),
a prompt and a negative prompt, and offer the samplers "pingpong" (the distilled models' default:
re-noised Euler steps) and "euler". A job's size is its waveform's length: WorkSize's width holds
the audio samples and its height 1, which the memory and cost estimates read as latent tokens
through the preset's latent (spatial = samples per latent frame, patch 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models.ace_step_call import ace_kwargs, decode_song, is_ace_step
from models.preset import AudioRule, ModelPreset, Output
from models.request import GenerationRequest
from models.soundtrack import Soundtrack

if TYPE_CHECKING:  # settings read this module on commands that must not load torch
    import torch

# WanGP's sampler names on its audio models, and the diffusers scheduler setting each means.
AUDIO_SOLVERS = {"pingpong": True, "euler": False}  # FlowMatchEulerDiscreteScheduler.stochastic_sampling


def is_audio(preset: ModelPreset) -> bool:
    return preset.output is Output.AUDIO


def audio_rule(preset: ModelPreset) -> AudioRule:
    if preset.audio is None:
        raise ValueError(f"{preset.id} is not an audio model")
    return preset.audio


def duration(value: object, preset: ModelPreset, problems: list[str]) -> float:
    """The seconds an audio job renders: `duration_seconds` as given (None or 0: the model's
    default, as WanGP's slider starts there), checked against the model's range."""
    rule = audio_rule(preset)
    if value is None or value == 0:
        return rule.default_seconds
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"duration_seconds: must be a number of seconds, not {type(value).__name__}")
        return rule.default_seconds
    if not rule.min_seconds <= value <= rule.max_seconds:
        problems.append(
            f"duration_seconds: {value:g} is not allowed for {preset.id}: must be between "
            f"{rule.min_seconds:g} and {rule.max_seconds:g} seconds"
        )
    return float(value)


def samples(preset: ModelPreset, seconds: float) -> int:
    """Samples per channel of a waveform of `seconds` (the job's work width)."""
    return int(seconds * audio_rule(preset).sample_rate)


def solver_problem(preset: ModelPreset, solver: str) -> str | None:
    if is_ace_step(preset):  # WanGP's ACE-Step 1.5 reads no sampler: its Euler steps whatever named
        return None
    if solver not in AUDIO_SOLVERS:
        return f"{solver!r} is not a sampler of {preset.id}; accepted: {', '.join(AUDIO_SOLVERS)}"
    return None


def configure_audio_scheduler(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> None:
    """Ping-pong or plain Euler on the pipeline's own flow-matching scheduler, from its config as
    loaded (the pipeline passes its own log-SNR sigmas, so nothing else changes)."""
    if problem := solver_problem(preset, request.sample_solver):
        raise ValueError(f"sample_solver: {problem}")
    if is_ace_step(preset):  # its pipeline hands its own sigmas to its Euler scheduler
        return
    stochastic = AUDIO_SOLVERS[request.sample_solver]
    if pipe.scheduler.config.get("stochastic_sampling") != stochastic:
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, stochastic_sampling=stochastic
        )


def audio_kwargs(
    preset: ModelPreset, request: GenerationRequest, generator: torch.Generator
) -> dict[str, Any]:
    """Keyword arguments of an audio pipeline's call (StableAudio3Pipeline, AceStepPipeline)."""
    if is_ace_step(preset):
        return ace_kwargs(request, generator)
    if request.duration_seconds is None:
        raise ValueError(f"{preset.id}: an audio job needs duration_seconds")
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration": request.duration_seconds,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "num_waveforms_per_prompt": request.batch_size,
        "generator": generator,
        "output_type": "np",
    }


def waveforms(result: Any, preset: ModelPreset, pipe: Any = None) -> list[Soundtrack]:
    """One Soundtrack per output from the pipeline's `audios` (outputs, channels, samples); ACE-Step's
    are latents, which `pipe`'s VAE decodes (models.ace_step_call)."""
    if is_ace_step(preset):
        return decode_song(pipe, result, preset)
    rule = audio_rule(preset)
    array = np.asarray(result.audios, dtype=np.float32)
    if array.ndim != 3 or array.shape[1] != rule.channels:
        raise RuntimeError(
            f"{preset.pipeline} returned audio of shape {array.shape}, expected (N, {rule.channels}, samples)"
        )
    return [Soundtrack(np.clip(one, -1.0, 1.0), rule.sample_rate) for one in array]
