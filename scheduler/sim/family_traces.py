"""The work of a family scenario: which jobs exist, and when they arrive.

A scenario draws a few image and video models with Zipf popularity, each in the generator's three
sizes and, where asked, a long video (the most frames the model allows). A kind of job no card of
the pool can run, or that takes its fastest card more than MAX_RENDER_S, is left out. Arrivals are
Poisson, bursty (bursts a sixteenth of the trace long), diurnal (a day's rate compressed to the
trace) or Poisson with an overload window.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from models.catalogue import Output, get_model
from models.gpus import find_gpu
from models.memory import estimate
from models.profiles import SPEED_ORDER
from models.work import WorkSize
from scheduler.feasibility import arch_problem
from scheduler.sim.cluster import build_cluster
from scheduler.sim.formats import PoolSpec
from scheduler.sim.generator import arrival_times, job_nodes, job_work, work_sizes
from scheduler.sim.memory_truth import true_memory
from scheduler.sim.truth import JobNoise, TruthConfig, render_seconds
from scheduler.snapshot import AgentView

IMAGE_MODELS = (
    "flux.1-schnell", "flux.1-dev", "qwen-image", "z-image-turbo", "flux.2-klein-4b", "chroma1-hd",
    "krea2-turbo", "z-image",
)  # fmt: skip
VIDEO_MODELS = (
    "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "ltx-video-2b", "hunyuan-video-t2v-13b",
    "ltx-video-13b-distilled", "skyreels-v2-df-1.3b-540p", "kandinsky5-lite-t2v", "wan2.1-vace-1.3b",
)  # fmt: skip
SIZE_MIX = (0.3, 0.5, 0.2)  # small, default, large: the generator's
LONG_SHARE = 0.15  # of a video model's jobs, in scenarios with long videos
LONG_FACTOR = 1.5  # a long video has at least this many times its model's default frames
MAX_RENDER_S = 7200.0  # a kind that takes its fastest card longer is left out of the scenario
# A job's working memory at three standard deviations of its own and its model's luck (truth.py).
WORST_LUCK = JobNoise(render=1.0, vram=1.5, ram=1.3)
DIURNAL_SWING = (0.5, 0.8)  # the rate swings by this share of its mean over the (compressed) day
BURST_SHARE = 1 / 16  # a burst's mean length, of the trace's; a lull's is twice it


@dataclass(frozen=True)
class Kind:
    """One kind of job of a scenario: its work, its share of the jobs, and its offered work."""

    work: WorkSize
    weight: float
    flops: float  # generator.job_work: render seconds x FLOP/s averaged over the cards that run it
    nodes: frozenset[str]  # the node kinds that can run it (generator.job_nodes)


def draw_models(rng: random.Random, images_and_videos: bool) -> list[str]:
    """A few models, most popular first; both images and videos when asked."""
    images = rng.randint(1 if images_and_videos else 0, 3)
    videos = rng.randint(1, 4)
    models = rng.sample(IMAGE_MODELS, images) + rng.sample(VIDEO_MODELS, videos)
    rng.shuffle(models)
    return models


def job_kinds(pool: PoolSpec, models: Sequence[str], zipf_s: float, long_videos: bool) -> list[Kind]:
    """The kinds of job of `models` that the pool can run, weighted by Zipf popularity x size mix."""
    fastest = _fastest_cards(pool)
    kinds: list[Kind] = []
    for rank, model in enumerate(models, start=1):
        preset = get_model(model)
        sizes = list(zip(work_sizes(preset), SIZE_MIX, strict=True))
        long = long_video(model)
        if long_videos and long is not None:
            sizes = [(work, share * (1 - LONG_SHARE)) for work, share in sizes] + [(long, LONG_SHARE)]
        for work, share in sizes:
            best = _fastest_render(work, fastest)
            flops = job_work(pool, work)
            if best is None or best > MAX_RENDER_S or flops is None:
                continue
            kinds.append(Kind(work, share / rank**zipf_s, flops, job_nodes(pool, work)))
    return kinds


def long_video(model: str) -> WorkSize | None:
    """The model's longest clip at its default resolution; None for an image model or one that
    allows fewer than LONG_FACTOR x its default frames."""
    preset = get_model(model)
    if preset.output is not Output.VIDEO or preset.frames is None:
        return None
    frames = preset.frames.max
    if frames < LONG_FACTOR * preset.defaults.video_length:
        return None
    width, height = (int(side) for side in preset.defaults.resolution.split("x"))
    return WorkSize(preset.id, width, height, frames, preset.defaults.num_inference_steps)


def arrivals(rng: random.Random, rate: float, end: float, arrival: str) -> list[float]:
    """Arrival instants in [0, end) at a mean `rate` a second: poisson, bursty or diurnal."""
    if arrival == "bursty":
        # The generator's bursts and lulls (1:2), scaled to the trace so every one has several.
        return list(arrival_times(rng, rate, end, arrival, end * BURST_SHARE, end * 2 * BURST_SHARE))
    if arrival != "diurnal":
        return list(arrival_times(rng, rate, end, arrival))
    # A day from midnight to midnight compressed to `end`: thinning a Poisson process at the peak.
    swing = rng.uniform(*DIURNAL_SWING)
    peak = rate * (1 + swing)
    times = []
    t = rng.expovariate(peak)
    while t < end:
        if rng.random() * peak < rate * (1 - swing * math.cos(2 * math.pi * t / end)):
            times.append(t)
        t += rng.expovariate(peak)
    return times


def window_arrivals(
    rng: random.Random, rate_out: float, rate_in: float, window: tuple[float, float], end: float
) -> list[float]:
    """Poisson arrivals at `rate_in` inside the window and `rate_out` outside it."""
    start, stop = window
    times = [t for t in arrival_times(rng, rate_out, start, "poisson")]
    times += [start + t for t in arrival_times(rng, rate_in, stop - start, "poisson")]
    times += [stop + t for t in arrival_times(rng, rate_out, end - stop, "poisson")]
    return times


def _fastest_cards(pool: PoolSpec) -> list[tuple[AgentView, float]]:
    # One agent view per (card, node RAM), with its FLOP/s at mean efficiency.
    config = TruthConfig(noise=False)
    agents = build_cluster(pool, config, 0)[1]
    seen: dict[tuple[str, int], tuple[AgentView, float]] = {}
    for agent in agents:
        key = (agent.spec.name, agent.node.ram_bytes)
        speed = find_gpu(agent.spec.name).half_tflops * 1e12 * config.mean_efficiency
        seen.setdefault(key, (agent.view, speed))
    return list(seen.values())


def _fastest_render(work: WorkSize, cards: list[tuple[AgentView, float]]) -> float | None:
    # The least render seconds over the cards and profiles where the work fits both the estimate
    # (so a policy would choose it) and the truth with a job's worst luck (so it does not run out
    # of memory there); None when no card has such a profile.
    preset = get_model(work.model_id)
    best = None
    for view, speed in cards:
        if arch_problem(preset, view) is not None:
            continue
        for profile in SPEED_ORDER:
            if not estimate(preset, profile, work.size).fits(view.vram_total, view.ram_total):
                continue
            vram, ram = true_memory(work.model_id, profile, work.size, WORST_LUCK)
            if vram <= view.vram_total and ram <= view.ram_total:
                seconds = render_seconds(work, profile, speed)
                best = seconds if best is None else min(best, seconds)
                break
    return best
