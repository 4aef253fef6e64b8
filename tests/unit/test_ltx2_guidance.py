"""WanGP's skip-self-attention guidance on the tiny LTX-2 transformer (models.ltx2_guidance): the
perturbed pass of a block adds nothing from its video and audio self attention, as WanGP's
SKIP_VIDEO_SELF_ATTN / SKIP_AUDIO_SELF_ATTN do (Wan2GP 8681e9f7), where diffusers' own pass adds the
attention's values instead; the other passes and the transformer after the call are untouched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from models.ltx2_guidance import wangp_skip_attention
from models.tiny_ltx2 import build_ltx2
from tests.torch_threads import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def call() -> tuple[Any, dict[str, Any]]:
    """The tiny pipeline's transformer and the keyword arguments of its first call in a render."""
    pipe = build_ltx2()
    pipe.set_progress_bar_config(disable=True)
    seen: list[dict[str, Any]] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(dict(kwargs)), with_kwargs=True
    )
    pipe(
        prompt="a fox",
        height=64,
        width=64,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=1.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
        max_sequence_length=32,
    )
    handle.remove()
    return pipe.transformer, seen[0] | {"return_dict": False}


def outputs(transformer: Any, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        video, audio = transformer(**kwargs)
    return video, audio


def test_the_perturbed_pass_adds_nothing_from_the_blocks_self_attention(
    call: tuple[Any, dict[str, Any]],
) -> None:
    transformer, kwargs = call
    with wangp_skip_attention(transformer):
        skipped = outputs(transformer, kwargs | {"spatio_temporal_guidance_blocks": [1]})
        plain = outputs(transformer, kwargs)
    # The same block with its self attention's output projection zeroed: nothing reaches the residual.
    block = transformer.transformer_blocks[1]
    saved = {
        name: [p.detach().clone() for p in getattr(block, name).to_out[0].parameters()]
        for name in ("attn1", "audio_attn1")
    }
    with torch.no_grad():
        for name in saved:
            for param in getattr(block, name).to_out[0].parameters():
                param.zero_()
    try:
        without = outputs(transformer, kwargs)
    finally:
        with torch.no_grad():
            for name, params in saved.items():
                for param, value in zip(getattr(block, name).to_out[0].parameters(), params, strict=True):
                    param.copy_(value)
    assert torch.allclose(skipped[0], without[0], atol=1e-6) and torch.allclose(
        skipped[1], without[1], atol=1e-6
    )
    assert not torch.allclose(skipped[0], plain[0])
    # Diffusers' own perturbed pass (the attention's values) is another one.
    own = outputs(transformer, kwargs | {"spatio_temporal_guidance_blocks": [1]})
    assert not torch.allclose(own[0], skipped[0])


def test_the_transformer_is_its_own_again_after(call: tuple[Any, dict[str, Any]]) -> None:
    transformer, kwargs = call
    before = outputs(transformer, kwargs | {"spatio_temporal_guidance_blocks": [0]})
    with wangp_skip_attention(transformer):
        outputs(transformer, kwargs | {"spatio_temporal_guidance_blocks": [0]})
    after = outputs(transformer, kwargs | {"spatio_temporal_guidance_blocks": [0]})
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
