"""A request the tiny Wan pipelines render in a fraction of a second on the CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from models.request import GenerationRequest

# prompt, negative prompt, width, height, frames, steps, guidance, flow shift, sampler, seed
_TINY_WAN = GenerationRequest("a red fox in the snow", "", 64, 64, 5, 3, 1.0, 3.0, "unipc", 7)


def tiny_wan_request(**changes: Any) -> GenerationRequest:
    """64x64, 5 frames, 3 steps of unipc at flow shift 3, seed 7, no guidance; `changes` replaced."""
    return replace(_TINY_WAN, **changes)
