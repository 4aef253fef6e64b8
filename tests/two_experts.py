"""Wan 2.2 A14B's layouts in tiny: the tiny Wan (text-to-video) and a 36-channel image-to-video Wan,
each with a second, perturbed transformer after a boundary."""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline

from models.tiny import tiny_pipeline


def two_expert_wan(boundary_ratio: float) -> Any:
    """A WanPipeline whose low-noise expert (transformer_2) is the tiny transformer moved by a fixed
    random offset, so the two experts' outputs differ; the same weights on every call."""
    pipe = tiny_pipeline("wan")
    low_noise = _perturbed(pipe.transformer)
    experts = WanPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        transformer=pipe.transformer,
        transformer_2=low_noise,
        vae=pipe.vae,
        scheduler=pipe.scheduler,
        boundary_ratio=boundary_ratio,
    )
    experts.set_progress_bar_config(disable=True)
    return experts


def two_expert_wan_i2v(boundary_ratio: float) -> Any:
    """Wan 2.2 I2V A14B's layout in tiny: two experts over 36 input channels (noise, mask, start and
    end latents) and no image encoder; the low-noise expert perturbed as in `two_expert_wan`."""
    text = tiny_pipeline("wan")
    torch.manual_seed(0)
    high_noise = WanTransformer3DModel.from_config(text.transformer.config, in_channels=36)
    low_noise = _perturbed(high_noise)
    experts = WanImageToVideoPipeline(
        tokenizer=text.tokenizer,
        text_encoder=text.text_encoder,
        vae=text.vae,
        scheduler=text.scheduler,
        transformer=high_noise,
        transformer_2=low_noise,
        boundary_ratio=boundary_ratio,
    )
    experts.set_progress_bar_config(disable=True)
    return experts


def _perturbed(transformer: Any) -> Any:
    # A fixed random offset on every weight: a second expert whose output differs from the first.
    moved = copy.deepcopy(transformer)
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return moved
