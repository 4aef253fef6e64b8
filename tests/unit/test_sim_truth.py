"""The simulator's true memory: its own form (not the estimator's, scaled), fitted to the H100
calibration, with luck that is the same for the same seed. docs/simulator-truth.md gives the fit."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import models.memory
from models.catalogue import catalogue, get_model
from models.memory import JobSize, estimate
from models.profiles import Profile
from scheduler.sim import memory_truth
from scheduler.sim.memory_truth import activation_bytes, decode_bytes, memory_peaks, true_memory
from scheduler.sim.truth import JobNoise, TruthConfig, job_noise, model_memory_bias

GIB = 1024**3
ROOT = Path(__file__).resolve().parents[2]
# Measured on an H100 by tests/gpu/calibrate.py (docs/memory.md, "GPU checks"): activations of one bf16
# denoising forward over the weights, GiB; and the tiled bf16 Wan VAE decode of 81 frames, GiB.
ACTIVATIONS_H100 = (
    ("wan2.1-t2v-1.3b", (832, 480, 33), 0.64),
    ("wan2.1-t2v-1.3b", (832, 480, 81), 1.49),
    ("wan2.1-t2v-1.3b", (1280, 720, 81), 3.43),
    ("wan2.1-t2v-14b", (832, 480, 81), 3.46),
    ("wan2.1-t2v-14b", (1280, 720, 81), 7.97),
)
VAE_DECODE_H100 = (((832, 480, 81), 0.95), ((1280, 720, 81), 1.96))
TOLERANCE = 0.01  # docs/simulator-truth.md: the fit is within 0.3% of each run, 1% is the claim
SIZES = ((832, 480, 33), (832, 480, 81), (1280, 720, 81), (1280, 720, 161))


@pytest.mark.parametrize(("model", "size", "measured_gib"), ACTIVATIONS_H100)
def test_activations_match_the_h100_calibration(
    model: str, size: tuple[int, int, int], measured_gib: float
) -> None:
    truth = activation_bytes(get_model(model), JobSize(*size)) / GIB
    assert truth == pytest.approx(measured_gib, rel=TOLERANCE)


@pytest.mark.parametrize(("size", "measured_gib"), VAE_DECODE_H100)
def test_vae_decode_matches_the_h100_calibration(size: tuple[int, int, int], measured_gib: float) -> None:
    assert decode_bytes(JobSize(*size)) / GIB == pytest.approx(measured_gib, rel=TOLERANCE)


def truth_over_estimate(model: str, profile: Profile, size: tuple[int, int, int]) -> float:
    vram, _ = true_memory(model, profile, JobSize(*size), JobNoise())
    return vram / estimate(get_model(model), profile, JobSize(*size)).vram_bytes


@pytest.mark.parametrize(
    ("model", "profile"),
    [("wan2.1-t2v-14b", Profile.P2), ("wan2.1-t2v-14b", Profile.P4), ("wan2.1-t2v-1.3b", Profile.P5)],
)
def test_truth_is_not_the_estimate_scaled_its_ratio_moves_with_size(model: str, profile: Profile) -> None:
    ratios = [truth_over_estimate(model, profile, size) for size in SIZES]
    assert max(ratios) / min(ratios) > 1.1, ratios


def test_the_estimate_errs_both_ways_across_the_catalogue() -> None:
    ratios = [
        truth_over_estimate(model, profile, (832, 480, 81) if preset.frames else (1024, 1024, 1))
        for model, preset in catalogue().items()
        if not preset.tiny
        for profile in Profile
    ]
    assert min(ratios) < 0.8 and max(ratios) > 1.05


def test_truth_does_not_move_with_the_estimator_s_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    size = JobSize(1280, 720, 81)
    before = {profile: true_memory("wan2.1-t2v-14b", profile, size, JobNoise()) for profile in Profile}
    for name, value in (("HIDDEN_BYTES", 100), ("FFN_BYTES", 50), ("VAE_BYTES_PER_PIXEL", 40_000)):
        monkeypatch.setattr(models.memory, name, value)
    monkeypatch.setattr(models.memory, "CUDA_CONTEXT", 10 * GIB)
    monkeypatch.setattr(models.memory, "PROCESS_RAM", 50 * GIB)
    memory_peaks.cache_clear()
    try:
        after = {profile: true_memory("wan2.1-t2v-14b", profile, size, JobNoise()) for profile in Profile}
    finally:
        memory_peaks.cache_clear()
    assert after == before
    assert "estimate" not in vars(memory_truth)


def test_luck_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    config = TruthConfig()
    first = [job_noise(config, 3, index, "wan2.1-t2v-14b") for index in range(50)]
    assert [job_noise(config, 3, index, "wan2.1-t2v-14b") for index in range(50)] == first
    assert [job_noise(config, 4, index, "wan2.1-t2v-14b") for index in range(50)] != first
    assert model_memory_bias(config, 3, "flux.1-dev") != model_memory_bias(config, 4, "flux.1-dev")


def test_a_model_s_bias_does_not_depend_on_python_s_hash_seed() -> None:
    code = "from scheduler.sim.truth import *; print(model_memory_bias(TruthConfig(), 0, 'flux.1-dev'))"
    printed = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }  # fmt: skip
    assert len(printed) == 1


def test_a_model_s_jobs_err_in_its_bias_s_direction() -> None:
    # Each job's luck is its own draw times its model's bias: over many jobs the model's geometric
    # mean is its bias, so the estimator is wrong one way for that model under that seed.
    config = TruthConfig()
    for model in ("wan2.1-t2v-14b", "flux.1-dev"):
        lucks = [job_noise(config, 0, index, model).vram for index in range(2000)]
        geometric = math.exp(sum(map(math.log, lucks)) / len(lucks))
        assert geometric == pytest.approx(model_memory_bias(config, 0, model), rel=0.01)
        spread = math.sqrt(sum((math.log(luck / geometric)) ** 2 for luck in lucks) / len(lucks))
        assert spread == pytest.approx(config.memory_sigma, rel=0.1)
    biases = [model_memory_bias(config, seed, "wan2.1-t2v-1.3b") for seed in range(200)]
    assert min(biases) < 0.9 and max(biases) > 1.1


def test_luck_moves_the_working_bytes_not_the_weights() -> None:
    # Profile 1 holds flux's 22 GB transformer whole: a job 50% unluckier needs little more.
    size = JobSize(1024, 1024, 1)
    plain, _ = true_memory("flux.1-dev", Profile.P1, size, JobNoise())
    unlucky, _ = true_memory("flux.1-dev", Profile.P1, size, JobNoise(vram=1.5))
    assert 1.0 < unlucky / plain < 1.05
    # Profile 5 streams the transformer: there the working bytes are most of the peak.
    plain, _ = true_memory("wan2.1-t2v-14b", Profile.P5, JobSize(1280, 720, 81), JobNoise())
    unlucky, _ = true_memory("wan2.1-t2v-14b", Profile.P5, JobSize(1280, 720, 81), JobNoise(vram=1.5))
    assert unlucky / plain > 1.3
