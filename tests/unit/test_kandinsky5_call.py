"""Kandinsky 5's video call scales the visual RoPE positions as WanGP's configs do, (1, 2, 2) at every
size (Wan2GP 8681e9f7 configs/k5_*_{t2v,i2v}.yaml metrics.scale_factor), where diffusers' pipelines
switch to (1, 3.16, 3.16) once a side leaves 480-854 pixels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.image_pipes import pipeline_for
from models.request import GenerationRequest
from models.tiny import tiny_pipeline
from tests.torch_threads import one_torch_thread

# 48x32: both sides under 480, where diffusers alone would scale by 3.16.
REQUEST = GenerationRequest("a red fox in the snow", "blurry", 48, 32, 5, 2, 5.0, 10.0, "euler", 7)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def frames(call: Any) -> np.ndarray:
    preset = get_model("k5-tiny")
    configure_scheduler(call, preset, REQUEST)
    kwargs = pipeline_kwargs(call, preset, REQUEST, torch.Generator("cpu").manual_seed(REQUEST.seed))
    return np.asarray(call(**kwargs).frames)


def test_every_size_takes_wangps_scale() -> None:
    call = pipeline_for(tiny_pipeline("kandinsky5"), get_model("k5-tiny"), REQUEST)
    for height, width in ((480, 832), (720, 1280), (1280, 720), (32, 48)):
        assert call._get_scale_factor(height, width) == (1.0, 2.0, 2.0)


def test_the_render_differs_from_diffusers_own_scale_off_480p() -> None:
    pipe = tiny_pipeline("kandinsky5")
    # The tiny's output layer starts at zero (as diffusers initialises it): moved, the network's
    # prediction, and so its positions, reach the frames.
    with torch.no_grad():
        for parameter in pipe.transformer.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    assert pipe._get_scale_factor(REQUEST.height, REQUEST.width) == (1, 3.16, 3.16)  # diffusers' rule
    diffusers_own = frames(pipe)
    wangps = frames(pipeline_for(pipe, get_model("k5-tiny"), REQUEST))
    assert not np.allclose(wangps, diffusers_own)
