"""What an LTX-2 pipeline call takes beyond the common arguments, and the soundtrack it returns.

LTX2Pipeline's own defaults turn on LTX-2.3's extra guidance passes (spatio-temporal guidance at
block 28, modality isolation at 3, guidance rescale 0.7, audio CFG at 7). The farm renders what a
job asks: classifier-free guidance at the job's guidance_scale, for the video and its audio alike,
and none of the other passes; WanGP's keys for them (perturbation_*, alt_guidance_scale, alt_scale,
audio_guidance_scale) are refused away from their no-op values (models.wangp_keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.preset import ModelPreset
from models.request import GenerationRequest
from models.soundtrack import Soundtrack

FAMILY = "ltx2"
# The real Gemma 3 reads 1024 tokens a prompt (the pipeline's default); a shorter tokenizer (the
# tiny one) says its own length.
MAX_PROMPT_TOKENS = 1024


def ltx2_kwargs(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """The LTX-2 call's guidance passes (plain CFG only) and prompt length; {} on other families."""
    if preset.family != FAMILY:
        return {}
    tokens = getattr(getattr(pipe, "tokenizer", None), "model_max_length", MAX_PROMPT_TOKENS)
    return {
        "stg_scale": 0.0,
        "spatio_temporal_guidance_blocks": None,
        "modality_scale": 1.0,
        "guidance_rescale": 0.0,
        # None: each audio scale follows its video one (the pipeline's rule).
        "audio_guidance_scale": None,
        "audio_stg_scale": None,
        "audio_modality_scale": None,
        "audio_guidance_rescale": None,
        # The audio-video cross attention's timestep: the other modality's sigma from LTX-2.3 on (its
        # transformer modulates the prompt cross attention), its own on LTX-2.0 (the 19B, the tiny).
        "use_cross_timestep": _is_ltx23_or_later(pipe),
        "max_sequence_length": min(int(tokens), MAX_PROMPT_TOKENS),
    }


def _is_ltx23_or_later(pipe: Any) -> bool:
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    return bool(getattr(config, "cross_attn_mod", False) or getattr(config, "audio_cross_attn_mod", False))


def soundtracks(result: Any, pipe: Any) -> list[Soundtrack] | None:
    """One Soundtrack per output of an LTX-2 call (its `audio`, at the vocoder's rate); None when
    the pipeline returns no audio."""
    audio = getattr(result, "audio", None)
    if audio is None:
        return None
    rate = int(pipe.vocoder.config.output_sampling_rate)
    array = audio.float().cpu().numpy() if hasattr(audio, "cpu") else np.asarray(audio, dtype=np.float32)
    if array.ndim == 2:  # one output, (channels, samples)
        array = array[None]
    return [Soundtrack(np.clip(track, -1.0, 1.0).astype(np.float32), rate) for track in array]
