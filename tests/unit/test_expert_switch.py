"""Wan 2.2's expert switch per job: the low-noise expert runs at and below switch_threshold (as WanGP
compares), one guidance phase keeps the high-noise expert, and the hot pipeline's own boundary is
back after every job, failed ones too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from models.call_args import configure_scheduler, expert_switch, pipeline_kwargs
from models.catalogue import get_model
from models.progress import Cancelled, Progress
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.tiny import tiny_pipeline
from models.weights import WeightCache
from tests.tiny_requests import cache_as, tiny_wan_request
from tests.two_experts import two_expert_wan

PRESET = get_model("wan2.2-t2v-a14b")  # its diffusers pipeline switches at boundary_ratio 0.875
OWN_BOUNDARY = 0.875


def request(switch: float | None, solver: str = "unipc", steps: int = 6) -> GenerationRequest:
    return tiny_wan_request(sample_solver=solver, steps=steps, guidance_scale_2=1.0, switch_threshold=switch)


def experts_by_step(pipe: Any, job: GenerationRequest) -> list[str]:
    """Which expert ran each step of a call made inside expert_switch."""
    ran: list[str] = []
    hooks = [
        getattr(pipe, name).register_forward_pre_hook(lambda *_, name=name: ran.append(name))
        for name in ("transformer", "transformer_2")
    ]
    configure_scheduler(pipe, PRESET, job)
    try:
        with expert_switch((pipe,), PRESET, job), torch.inference_mode():
            pipe(**pipeline_kwargs(pipe, PRESET, job, torch.Generator().manual_seed(job.seed)))
    finally:
        for hook in hooks:
            hook.remove()
    return ran


def test_the_low_noise_expert_runs_at_and_below_the_threshold_as_wangp_compares() -> None:
    # causvid's timesteps are whole numbers: 603 is one, and WanGP switches on t <= threshold.
    pipe = two_expert_wan(OWN_BOUNDARY)
    ran = experts_by_step(pipe, request(603, solver="causvid", steps=9))
    assert ran == ["transformer"] * 4 + ["transformer_2"] * 5  # 1000 934 862 756 | 603 410 250 140 74
    assert pipe.config.boundary_ratio == OWN_BOUNDARY


def test_one_guidance_phase_runs_the_high_noise_expert_alone() -> None:
    # WanGP with guidance_phases 1 never hands over: the plan's switch is 0, below every timestep.
    ran = experts_by_step(two_expert_wan(OWN_BOUNDARY), request(0.0))
    assert ran == ["transformer"] * 6


def test_a_one_transformer_pipeline_refuses_a_switch() -> None:
    one = tiny_pipeline("wan")
    refused = pytest.raises(ValueError, match=r"switch_threshold: wan2\.2-t2v-a14b has one transformer")
    with refused, expert_switch((one,), PRESET, request(500)):
        pass


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineHost]:
    """A host whose weight cache holds the tiny two-expert Wan as the Wan 2.2 A14B model."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    cache_as(cache, PRESET, two_expert_wan(OWN_BOUNDARY))
    yield PipelineHost(cache, device="cpu")


def test_a_job_renders_its_own_switch_and_the_next_job_renders_as_on_a_fresh_pipeline(
    host: PipelineHost,
) -> None:
    at_500 = host.generate(PRESET, request(500)).frames
    hot = host._hot
    assert hot is not None and hot.pipe.config.boundary_ratio == OWN_BOUNDARY
    at_875 = host.generate(PRESET, request(875)).frames
    assert host.loads == 1  # the same hot pipeline rendered both
    assert not np.array_equal(at_500, at_875)
    fresh = PipelineHost(host.cache, device="cpu")
    assert np.array_equal(at_875, fresh.generate(PRESET, request(875)).frames)


def test_a_failed_job_leaves_the_pipelines_own_boundary(host: PipelineHost) -> None:
    def cancel(progress: Progress) -> None:
        if progress.step == 2:
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        host.generate(PRESET, request(300), on_progress=cancel)
    hot = host._hot
    assert hot is not None and hot.pipe.config.boundary_ratio == OWN_BOUNDARY
