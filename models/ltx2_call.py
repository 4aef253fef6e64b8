"""What an LTX-2 pipeline call takes beyond the common arguments, and the soundtrack it returns.

LTX2Pipeline's own defaults turn on LTX-2.3's extra guidance passes (spatio-temporal guidance at
block 28, modality isolation at 3, guidance rescale 0.7, audio CFG at 7). The farm renders what a
job asks, as WanGP reads it (models.ltx2_stages.Guidance): CFG at guidance_scale and the audio's at
audio_guidance_scale, modality guidance at alt_guidance_scale, rescale at alt_scale, and WanGP's
skip-self-attention pass at scale 1 in the blocks perturbation_layers names (perturbation_switch 2;
models.ltx2_guidance makes diffusers' perturbed pass WanGP's). Without such a record (a model other
than LTX-2's), plain CFG for video and audio alike.

WanGP gives LTX-2 Lightricks' default negative prompt when a job has none (Wan2GP 8681e9f7,
models/ltx2/ltx2.py generate); diffusers ships the same text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.ltx2_stages import Guidance
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
    from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

    tokens = getattr(getattr(pipe, "tokenizer", None), "model_max_length", MAX_PROMPT_TOKENS)
    passes = request.ltx2_guidance or Guidance(audio_scale=request.guidance_scale)
    return {
        "negative_prompt": request.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
        "stg_scale": 1.0 if passes.skip_blocks else 0.0,
        "spatio_temporal_guidance_blocks": list(passes.skip_blocks) or None,
        "modality_scale": passes.modality,
        "guidance_rescale": passes.rescale,
        "audio_guidance_scale": passes.audio_scale,
        # None: each audio scale follows its video one (the pipeline's rule), as WanGP's do.
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
