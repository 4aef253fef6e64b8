"""Requests the tiny pipelines render in a fraction of a second on the CPU, and weights put where a
PipelineHost finds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.catalogue import ModelPreset
from models.loras import parse_loras
from models.request import GenerationRequest
from models.weights import COMPLETE, WeightCache

# prompt, negative prompt, width, height, frames, steps, guidance, flow shift, sampler, seed
_TINY_WAN = GenerationRequest("a red fox in the snow", "", 64, 64, 5, 3, 1.0, 3.0, "unipc", 7)


def tiny_wan_request(**changes: Any) -> GenerationRequest:
    """64x64, 5 frames, 3 steps of unipc at flow shift 3, seed 7, no guidance; `changes` replaced."""
    return replace(_TINY_WAN, **changes)


def lora_request(
    preset: ModelPreset, frames: int, steps: int, loras: Sequence[str] = (), multipliers: str = ""
) -> GenerationRequest:
    """64x64 at the preset's own guidance, shift and sampler, seed 7, with `loras` weighed by
    `multipliers` (WanGP's syntax) over `steps`."""
    return GenerationRequest(
        prompt="a fox in the snow",
        negative_prompt="",
        width=64,
        height=64,
        frames=frames,
        steps=steps,
        guidance_scale=preset.defaults.guidance_scale,
        flow_shift=preset.defaults.flow_shift,
        sample_solver=preset.defaults.sample_solver,
        seed=7,
        loras=parse_loras(list(loras), multipliers, steps),
    )


def cache_as(cache: WeightCache, preset: ModelPreset, pipe: Any) -> Path:
    """Save `pipe` into `cache` as `preset`'s weights, complete as a finished fetch leaves them."""
    folder = cache.folder(preset)
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / COMPLETE).write_text('{"source": "disk"}')
    return folder
