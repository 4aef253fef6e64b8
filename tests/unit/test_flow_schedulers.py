"""WanGP's causvid and lcm samplers: their timesteps and sigmas are WanGP's, a tiny Wan renders
with each, the steps WanGP caps are the steps run and recorded, and other families refuse them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.flow_schedulers import CAUSVID_TIMESTEPS, CausVidScheduler, LcmFlowScheduler
from models.samplers import MAX_STEPS
from models.settings import SettingsError, parse_settings, resolve
from models.tiny import tiny_pipeline
from tests.tiny_requests import tiny_wan_request

# WanGP at deepbeepmeep/Wan2GP@8681e9f7: shared/utils/lcm_scheduler.py's LCMScheduler after
# set_timesteps(min(steps, 8), shift=shift), as models/wan/any2video.py makes it for 'lcm'
# (float32 values, printed exactly).
WANGP_LCM: dict[tuple[int, float], tuple[list[float], list[float]]] = {
    (2, 5.0): ([1000.0, 834.1633911132812], [1.0, 0.8341633677482605, 0.014792900532484055]),
    (4, 5.0): (
        [1000.0, 937.7337646484375, 834.1633911132812, 627.7943115234375],
        [1.0, 0.9377337694168091, 0.8341633677482605, 0.6277943253517151, 0.014792900532484055],
    ),
    (12, 3.0): (
        [
            1000.0,
            954.6937866210938,
            900.3590087890625,
            833.9981079101562,
            751.12109375,
            644.6863403320312,
            502.98504638671875,
            305.0089416503906,
        ],
        [
            1.0,
            0.9546937942504883,
            0.900359034538269,
            0.8339980840682983,
            0.7511211037635803,
            0.6446863412857056,
            0.5029850602149963,
            0.3050089478492737,
            0.008928571827709675,
        ],
    ),
    (6, 1.0): (
        [
            1000.0,
            833.8323364257812,
            667.6646728515625,
            501.4970397949219,
            335.3293762207031,
            169.16171264648438,
        ],
        [
            1.0,
            0.833832323551178,
            0.667664647102356,
            0.5014970302581787,
            0.3353293836116791,
            0.16916170716285706,
            0.002994012087583542,
        ],
    ),
}
# The same file's 'causvid' branch: these timesteps cut to the steps asked, sigmas t / 1000 then 0.
WANGP_CAUSVID = [1000, 934, 862, 756, 603, 410, 250, 140, 74]


def _f32(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize(("steps", "shift"), sorted(WANGP_LCM))
def test_lcm_runs_wangps_timesteps_and_sigmas(steps: int, shift: float) -> None:
    scheduler = LcmFlowScheduler(shift=shift)
    scheduler.set_timesteps(steps, device="cpu")
    timesteps, sigmas = WANGP_LCM[(steps, shift)]
    assert torch.equal(scheduler.timesteps, _f32(timesteps))
    assert torch.equal(scheduler.sigmas, _f32(sigmas))


@pytest.mark.parametrize("steps", [1, 4, 9, 20])
def test_causvid_runs_wangps_timesteps_and_sigmas(steps: int) -> None:
    scheduler = CausVidScheduler(shift=5.0)  # the shift does not move causvid's timesteps
    scheduler.set_timesteps(steps, device="cpu")
    expected = _f32([float(t) for t in WANGP_CAUSVID[:steps]])
    assert torch.equal(scheduler.timesteps, expected)
    assert torch.equal(
        scheduler.sigmas, torch.cat([torch.tensor(WANGP_CAUSVID[:steps]) / 1000, torch.zeros(1)])
    )
    assert list(CAUSVID_TIMESTEPS) == WANGP_CAUSVID and MAX_STEPS["causvid"] == len(WANGP_CAUSVID)


def test_each_step_moves_the_sample_along_the_flow_to_the_next_sigma() -> None:
    scheduler = LcmFlowScheduler(shift=5.0)
    scheduler.set_timesteps(2)
    sample, velocity = torch.ones(3), torch.full((3,), 0.5)
    first = scheduler.step(velocity, scheduler.timesteps[0], sample, return_dict=False)[0]
    second = scheduler.step(velocity, scheduler.timesteps[1], first, return_dict=False)[0]
    sigmas = scheduler.sigmas
    assert torch.allclose(first, sample + 0.5 * (sigmas[1] - sigmas[0]))
    assert torch.allclose(second, first + 0.5 * (sigmas[2] - sigmas[1]))  # ends at sigma_min, not 0


def _render(pipe: Any, solver: str) -> np.ndarray:
    preset = get_model("wan-tiny")
    request = tiny_wan_request(sample_solver=solver, guidance_scale=3.0)
    configure_scheduler(pipe, preset, request)
    kwargs = pipeline_kwargs(pipe, preset, request, torch.Generator("cpu").manual_seed(request.seed))
    with torch.inference_mode():
        return np.asarray(pipe(**kwargs).frames)


@pytest.fixture(scope="module")
def wan() -> Any:
    pipe = tiny_pipeline("wan")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("solver", ["causvid", "lcm"])
def test_a_tiny_wan_renders_with_the_solver_and_not_as_unipc(wan: Any, solver: str) -> None:
    frames = _render(wan, solver)
    assert np.isfinite(frames).all() and frames.std() > 0
    assert type(wan.scheduler).__name__ == {"causvid": "CausVidScheduler", "lcm": "LcmFlowScheduler"}[solver]
    assert not np.allclose(frames, _render(wan, "unipc"), atol=1e-3)
    assert np.array_equal(frames, _render(wan, solver))  # same seed, same frames


def test_the_pipeline_runs_the_capped_steps(wan: Any) -> None:
    seen: list[float] = []

    def record(_pipe: Any, _step: int, t: torch.Tensor, tensors: dict[str, Any]) -> dict[str, Any]:
        seen.append(float(t))
        return tensors

    preset = get_model("wan-tiny")
    request = tiny_wan_request(sample_solver="lcm", steps=12)
    configure_scheduler(wan, preset, request)
    with torch.inference_mode():
        wan(
            **pipeline_kwargs(wan, preset, request, torch.Generator().manual_seed(1)),
            callback_on_step_end=record,
        )
    assert len(seen) == MAX_STEPS["lcm"]


@pytest.mark.parametrize(("solver", "asked", "run"), [("lcm", 10, 8), ("causvid", 12, 9), ("lcm", 4, 4)])
def test_the_steps_run_and_the_solver_are_recorded(solver: str, asked: int, run: int, tmp_path: Path) -> None:
    settings = {"model_type": "t2v", "prompt": "a fox", "sample_solver": solver, "num_inference_steps": asked}
    job = resolve(parse_settings(settings), tmp_path)
    (generation,) = job.generations
    assert generation.request.sample_solver == solver and generation.request.steps == run
    assert generation.metadata["sample_solver"] == solver
    assert generation.metadata["num_inference_steps"] == run
    assert job.work.steps == run
    capped = [w for w in job.warnings if w.startswith("num_inference_steps:")]
    assert capped == (
        []
        if asked == run
        else [
            f"num_inference_steps: {asked} runs as {run} steps, as in WanGP: "
            f"its {solver!r} sampler runs at most {run}"
        ]
    )


@pytest.mark.parametrize(("model_type", "model_id"), [("flux", "flux.1-dev"), ("ltx-tiny", "ltx-tiny")])
@pytest.mark.parametrize("solver", ["causvid", "lcm"])
def test_other_families_refuse_the_solver_naming_it_and_the_model(
    model_type: str, model_id: str, solver: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError) as refused:
        resolve(parse_settings({"model_type": model_type, "sample_solver": solver}), tmp_path)
    assert f"sample_solver: sample_solver {solver!r} is not available for {model_id}" in str(refused.value)
