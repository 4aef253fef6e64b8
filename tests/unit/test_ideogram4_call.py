"""models.ideogram4_call's pure parts: WanGP's Ideogram 4 schedule is the one diffusers' pipeline
steps through, and WanGP's fix_settings rewrite of a loaded file (Wan2GP 8681e9f7
models/ideogram4/ideogram4_handler.py, scheduler.py)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.pipelines.ideogram4.pipeline_ideogram4 import _logit_normal_sigmas, _resolution_aware_mu

from models.ideogram4_call import wangp_fixed
from models.phased_guidance import noise_levels


@pytest.mark.parametrize(
    ("steps", "width", "height", "mu", "std"), [(20, 1024, 1024, 0.0, 1.75), (12, 832, 480, 0.5, 1.5)]
)
def test_wangps_noise_levels_are_the_pipelines_sigmas(
    steps: int, width: int, height: int, mu: float, std: float
) -> None:
    ours = noise_levels(steps, width, height, mu, std)
    theirs = _logit_normal_sigmas(steps, _resolution_aware_mu(height, width, mu), std=std).tolist()
    assert len(ours) == len(theirs) == steps
    # WanGP spaces its steps in float32, diffusers in float64: the same schedule to float32 rounding.
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(ours, theirs, strict=True))
    assert ours == sorted(ours, reverse=True)  # noisiest first


def test_a_preset_mode_overrides_the_files_own_values_and_is_cleared() -> None:
    fixed = wangp_fixed({"model_mode": "V4_TURBO_12", "num_inference_steps": 30, "guidance_scale": 5})
    assert fixed["model_mode"] is None
    assert (fixed["num_inference_steps"], fixed["guidance_scale"], fixed["switch_threshold"]) == (
        12,
        7.0,
        302,
    )
    assert fixed["custom_settings"] == {"ideogram_mu": 0.5, "ideogram_std": 1.75}


def test_the_legacy_cfg_override_becomes_a_switch_threshold() -> None:
    legacy = {
        "ideogram_cfg_override_enabled": 1,
        "ideogram_cfg_override_start_percent": 0.9,
        "ideogram_std": 1.5,
    }
    fixed = wangp_fixed({"custom_settings": legacy, "flow_shift": 1.0})
    # ideogram4_handler._percent_to_switch_threshold at shift 1: (1 - 0.9) x 1000.
    assert fixed["switch_threshold"] == 100
    assert fixed["custom_settings"] == {"ideogram_std": 1.5}  # the legacy keys dropped


def test_a_sampler_wangp_does_not_offer_becomes_euler_and_its_own_stay() -> None:
    assert wangp_fixed({"sample_solver": "unipc"})["sample_solver"] == "euler"
    assert wangp_fixed({"sample_solver": "res_2s"})["sample_solver"] == "res_2s"
    assert "sample_solver" not in wangp_fixed({"prompt": "a"})


def test_noise_levels_run_in_float32_as_wangps() -> None:
    levels = noise_levels(4, 512, 512, 0.0, 1.0)
    assert all(torch.tensor(level, dtype=torch.float32).item() == level for level in levels)
