"""Step skipping rendered on the CPU with the tiny Wan (its transformer is Wan 2.1 1.3B's, shrunk):
a settings file asking for MagCache renders fewer steps and its output says how many; a cache that
skips nothing leaves the bytes of a plain render; the hot pipeline's next job renders as on a fresh
one, also after a job that failed mid-way; TeaCache follows the time embedding; and the hooks do
what diffusers' own MagCache does wherever both passes share one plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.hooks import MagCacheConfig

from gpu_agent.render import render_job
from models.call_args import pipeline_kwargs
from models.catalogue import get_model
from models.progress import Cancelled, Progress
from models.runner import PipelineHost
from models.settings import Job, parse_settings, resolve
from models.step_cache import CALIBRATIONS, CacheKind, StepCaching, StepSkip, mag_plan, start_step, tea_plan
from models.step_cache import _mag_ratios_per_step as per_step_ratios
from models.step_cache_hook import step_skipping, time_embedding_changes
from models.tiny import tiny_pipeline
from models.weights import WeightCache
from processing.metadata import read_metadata
from tests.tiny_requests import tiny_wan_request

STEPS = 16  # tests/benchmarks/bench_step_skip.py measures at 30
WAN = {
    "model_type": "wan-tiny",
    "prompt": "a fox in the snow",
    "seed": 7,
    "num_inference_steps": STEPS,
    "video_length": 5,
}
MAG = WAN | {"skip_steps_cache_type": "mag", "skip_steps_multiplier": 2.0}


@pytest.fixture(scope="module")
def host(weight_cache: WeightCache) -> PipelineHost:
    """One hot pipeline for the module, as an agent keeps one."""
    return PipelineHost(weight_cache)


@pytest.fixture(scope="module")
def plain(weight_cache: WeightCache, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A plain render on a fresh pipeline."""
    return frames(PipelineHost(weight_cache), WAN, tmp_path_factory.mktemp("plain"))


def resolved(settings: dict[str, Any], folder: Path) -> Job:
    return resolve(parse_settings(settings), folder)


def frames(host: PipelineHost, settings: dict[str, Any], folder: Path) -> np.ndarray:
    job = resolved(settings, folder)
    return host.generate(job.preset, job.generations[0].request).frames


def test_mag_skips_steps_and_the_output_records_them(
    host: PipelineHost, plain: np.ndarray, tmp_path: Path
) -> None:
    job = resolved(MAG, tmp_path)
    [output] = render_job(host, job, tmp_path / "out", "mag")
    metadata = read_metadata(output.path)
    assert metadata is not None
    plan = mag_plan(CALIBRATIONS["t2v_1.3B"], StepSkip(CacheKind.MAG, 2.0), STEPS)
    assert 0 < plan.steps_skipped < STEPS
    assert (metadata["wanfarm"]["steps_run"], metadata["wanfarm"]["steps_skipped"]) == (
        plan.steps_run,
        plan.steps_skipped,
    )
    assert metadata["num_inference_steps"] == STEPS
    assert (metadata["skip_steps_cache_type"], metadata["skip_steps_multiplier"]) == ("mag", 2.0)
    assert not np.array_equal(frames(host, MAG, tmp_path), plain)


def test_a_plain_render_records_every_step_run(host: PipelineHost, tmp_path: Path) -> None:
    job = resolved(WAN, tmp_path)
    info = host.generate(job.preset, job.generations[0].request).info
    assert (info.steps_run, info.steps_skipped) == (STEPS, 0)


def test_a_cache_that_skips_nothing_renders_the_bytes_of_a_plain_render(
    host: PipelineHost, plain: np.ndarray, tmp_path: Path
) -> None:
    # From 100% on no step may be skipped: the hooks run every step and must change nothing.
    settings = MAG | {"skip_steps_start_step_perc": 100}
    job = resolved(settings, tmp_path)
    output = host.generate(job.preset, job.generations[0].request)
    assert (output.info.steps_run, output.info.steps_skipped) == (STEPS, 0)
    assert np.array_equal(output.frames, plain)


def test_a_job_after_a_skipping_job_renders_as_on_a_fresh_pipeline(
    weight_cache: WeightCache, plain: np.ndarray, tmp_path: Path
) -> None:
    hot = PipelineHost(weight_cache)
    frames(hot, MAG, tmp_path)
    after = frames(hot, WAN, tmp_path)
    assert hot.loads == 1
    assert np.array_equal(after, plain)


def test_a_skipping_job_that_fails_mid_way_leaves_the_pipeline_clean(
    weight_cache: WeightCache, plain: np.ndarray, tmp_path: Path
) -> None:
    hot = PipelineHost(weight_cache)
    job = resolved(MAG, tmp_path)

    def cancel_at_step_5(progress: Progress) -> None:
        if progress.step == 5:
            raise Cancelled()

    with pytest.raises(Cancelled):
        hot.generate(job.preset, job.generations[0].request, on_progress=cancel_at_step_5)
    assert np.array_equal(frames(hot, WAN, tmp_path), plain)


@pytest.fixture(scope="module")
def pipe() -> Any:
    built = tiny_pipeline("wan")
    built.set_progress_bar_config(disable=True)
    return built


def call(pipe: Any, caching: StepCaching | None = None) -> tuple[np.ndarray, int]:
    """The tiny pipeline's frames at STEPS steps, and the steps whose blocks ran (conditional pass)."""
    request = tiny_wan_request(steps=STEPS, guidance_scale=5.0)  # with guidance: both passes run
    kwargs = pipeline_kwargs(pipe, get_model("wan-tiny"), request, torch.Generator().manual_seed(7))
    with torch.inference_mode(), step_skipping(pipe, caching, STEPS) as steps:
        result = pipe(**kwargs)
    return np.asarray(result.frames), steps.result().run


@pytest.fixture
def smooth_time_embedding(pipe: Any) -> Iterator[None]:
    """The tiny model's random time embedding changes by about 60% a step, which TeaCache never
    skips; a large bias makes it change as a trained model's does (a few % a step)."""
    bias = pipe.transformer.condition_embedder.time_embedder.linear_2.bias
    kept = bias.detach().clone()
    with torch.no_grad():
        bias.add_(30.0)
    yield
    with torch.no_grad():
        bias.copy_(kept)


def test_tea_skips_the_steps_its_time_embedding_plan_names(pipe: Any, smooth_time_embedding: None) -> None:
    caching = StepCaching(StepSkip(CacheKind.TEA, 2.0), "t2v_1.3B")
    scheduler = pipe.scheduler
    scheduler.set_timesteps(STEPS)
    changes = time_embedding_changes(pipe.transformer, scheduler.timesteps)
    plan = tea_plan(CALIBRATIONS["t2v_1.3B"], caching.skip, changes)
    assert plan.steps_skipped > 0
    skipped, ran = call(pipe, caching)
    plain, all_ran = call(pipe)
    assert (ran, all_ran) == (plan.steps_run, STEPS)
    assert not np.array_equal(skipped, plain)


def test_where_both_passes_share_a_plan_the_hooks_render_as_diffusers_magcache(pipe: Any) -> None:
    skip = StepSkip(CacheKind.MAG, 2.0)
    calibration = CALIBRATIONS["t2v_1.3B"]
    plan = mag_plan(calibration, skip, STEPS)
    assert plan.cond == plan.uncond and plan.steps_skipped > 0
    ours, _ = call(pipe, StepCaching(skip, "t2v_1.3B"))
    assert calibration.mag_ratios is not None
    cond_ratios, _ = per_step_ratios(calibration.mag_ratios, STEPS)
    # diffusers skips at error <= threshold from step int(ratio x steps + 0.5): the same rule at the
    # float just under WanGP's threshold, from the step after WanGP's start.
    pipe.transformer.enable_cache(
        MagCacheConfig(
            threshold=math.nextafter(plan.threshold, 0.0),
            max_skip_steps=2,
            retention_ratio=(start_step(skip, STEPS) + 1) / STEPS,
            num_inference_steps=STEPS,
            mag_ratios=cond_ratios,
        )
    )
    try:
        theirs, _ = call(pipe)
    finally:
        pipe.transformer.disable_cache()
    assert np.array_equal(ours, theirs)
