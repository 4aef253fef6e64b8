"""Wan 2.2 A14B's layout in tiny: the tiny Wan with a second, perturbed transformer after a boundary."""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

from models.tiny import BUILDERS


def two_expert_wan(boundary_ratio: float) -> Any:
    """A WanPipeline whose low-noise expert (transformer_2) is the tiny transformer moved by a fixed
    random offset, so the two experts' outputs differ; the same weights on every call."""
    pipe = BUILDERS["wan"]()
    low_noise = copy.deepcopy(pipe.transformer)
    with torch.no_grad():
        for parameter in low_noise.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
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
