"""WanGP's skip-self-attention guidance (perturbation_switch 2) on diffusers' LTX-2 transformer.

LTX2Pipeline computes the perturbed pass of its spatio-temporal guidance by replacing the self
attention of the chosen blocks with its values. WanGP (Wan2GP 8681e9f7,
models/ltx2/ltx_core/model/transformer/transformer.py, PerturbationType.SKIP_VIDEO_SELF_ATTN and
SKIP_AUDIO_SELF_ATTN) skips those blocks' self attention altogether: nothing is added to the
residual stream. While `wangp_skip_attention` holds, the pipeline's perturbed pass is WanGP's: the
transformer call that names `spatio_temporal_guidance_blocks` runs with none named, and the video
and audio self attention of those blocks return zeros (their gated residual then adds nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

BLOCKS_KEY = "spatio_temporal_guidance_blocks"
SELF_ATTENTION = ("attn1", "audio_attn1")  # video and audio self attention of a diffusers block


@contextmanager
def wangp_skip_attention(transformer: Any) -> Iterator[None]:
    """The transformer's perturbed passes skip the named blocks' self attention, as WanGP's do;
    the hooks are removed on the way out, whatever happened."""
    skipped: set[int] = set()

    def take_blocks(
        _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        skipped.clear()
        skipped.update(kwargs.get(BLOCKS_KEY) or ())
        return args, kwargs | {BLOCKS_KEY: None}

    handles = [transformer.register_forward_pre_hook(take_blocks, with_kwargs=True)]
    for index, block in enumerate(transformer.transformer_blocks):
        for name in SELF_ATTENTION:
            handles.append(getattr(block, name).register_forward_hook(_zero_when(index, skipped)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _zero_when(index: int, skipped: set[int]) -> Any:
    def hook(_module: Any, _args: Any, output: Any) -> Any:
        return torch.zeros_like(output) if index in skipped else output

    return hook
