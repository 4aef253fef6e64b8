"""LoRA multipliers read in the job's guidance phases, as WanGP reads them, on one expert or two.

WanGP at deepbeepmeep/Wan2GP 8681e9f7: wgp.py validate_settings and generate_video parse
loras_multipliers with nb_phases = lora_multiplier_phases, the guidance phases (capped by the
model's guidance_max_phases, at least 1), not the number of experts; shared/utils/loras_mutipliers.py
parse_loras_multipliers refuses more ';' phases than that and widens "x;y" on three phases at
model_switch_phase's side; get_model_switch_steps starts phase 2 (3) at the first timestep at or
below switch_threshold (switch_threshold2), the same steps on both experts (update_loras_slists).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.cli.exits import EXIT_INVALID
from models.catalogue import get_model
from models.loras import LoraLibrary, LoraPhases, LoraRequest
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.settings import SettingsError, parse_settings, resolve
from models.tiny import tiny_pipeline
from models.tiny_loras import LoraLayout, save_tiny_lora
from models.weights import WeightCache
from tests.tiny_requests import cache_as
from tests.two_experts import two_expert_wan

LORA = "style.safetensors"
STEPS = 6
WAN22 = {"model_type": "t2v_2_2", "prompt": "a fox", "activated_loras": [LORA], "num_inference_steps": STEPS}
# Three phases on Wan 2.2: the low-noise expert from phase 2, phase 3 at the same scale (both start
# within 6 steps at the model's flow shift of 12).
THREE = WAN22 | {
    "guidance_phases": 3,
    "switch_threshold": 875,
    "switch_threshold2": 800,
    "guidance2_scale": 3,
    "guidance3_scale": 3,
}
# Two phases on Wan 2.1's one transformer, at one scale (the pipeline changes none).
WAN21 = WAN22 | {
    "model_type": "t2v",
    "guidance_phases": 2,
    "switch_threshold": 750,
    "guidance_scale": 5,
    "guidance2_scale": 5,
}


def loras(settings: dict[str, Any], tmp_path: Path) -> tuple[LoraRequest, ...]:
    return resolve(parse_settings(settings), tmp_path).generations[0].request.loras


def refusal(settings: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(parse_settings(settings), tmp_path)
    return "; ".join(caught.value.problems)


# --- how many phases, and where they start -----------------------------------------------------


def test_one_guidance_phase_on_wan22_reads_one_phase_and_refuses_two_naming_the_key(tmp_path: Path) -> None:
    one = WAN22 | {"guidance_phases": 1}
    (lora,) = loras(one | {"loras_multipliers": "0.5,1"}, tmp_path)
    assert (lora.phases, lora.schedule()) == (LoraPhases(1), (0.5, 0.5, 0.5, 1.0, 1.0, 1.0))
    assert refusal(one | {"loras_multipliers": "1;0"}, tmp_path).startswith(
        "loras_multipliers entry 1 ('1;0', for style.safetensors) gives 2 phases separated by ';', "
        "but this job runs 1 guidance phase(s) (guidance_phases)"
    )


def test_wan22s_default_two_phases_start_phase_2_at_switch_threshold(tmp_path: Path) -> None:
    (lora,) = loras(WAN22 | {"loras_multipliers": "1;0"}, tmp_path)
    assert (lora.phases, lora.values) == (LoraPhases(2, (875.0,)), ((1.0,), (0.0,)))
    assert "gives 3 phases" in refusal(WAN22 | {"loras_multipliers": "1;0;1"}, tmp_path)


@pytest.mark.parametrize(
    ("switch_phase", "widened"), [(1, ((1.0,), (0.0,), (0.0,))), (2, ((1.0,), (1.0,), (0.0,)))]
)
def test_three_phases_take_three_values_and_widen_two_as_wangp_does(
    switch_phase: int, widened: tuple[tuple[float, ...], ...], tmp_path: Path
) -> None:
    (three,) = loras(THREE | {"loras_multipliers": "1;0.5;0"}, tmp_path)
    assert (three.phases, three.values) == (LoraPhases(3, (875.0, 800.0)), ((1.0,), (0.5,), (0.0,)))
    # model_switch_phase 2 keeps phase 2 on the high-noise expert, at guidance_scale.
    settings = THREE | {"model_switch_phase": switch_phase, "loras_multipliers": "1;0"}
    if switch_phase == 2:
        settings |= {"guidance2_scale": 4, "guidance_scale": 4}
    (two,) = loras(settings, tmp_path)
    assert (two.phases.switch_phase, two.values) == (switch_phase, widened)


def test_one_transformer_reads_the_guidance_phases_too(tmp_path: Path) -> None:
    (lora,) = loras(WAN21 | {"loras_multipliers": "1;0"}, tmp_path)
    assert lora.phases == LoraPhases(2, (750.0,))
    assert "runs 1 guidance phase" in refusal(
        WAN21 | {"guidance_phases": 1, "loras_multipliers": "1;0"}, tmp_path
    )


def test_a_model_without_guidance_phases_reads_one(tmp_path: Path) -> None:
    settings = {"model_type": "hunyuan", "activated_loras": [LORA], "loras_multipliers": "1;0"}
    assert "runs 1 guidance phase" in refusal(settings, tmp_path)


def test_a_dry_run_refusing_a_phase_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(WAN22 | {"guidance_phases": 1, "loras_multipliers": "1;0"}))
    assert main(["render", "--dry-run", str(path)]) == EXIT_INVALID
    assert (
        "loras_multipliers entry 1 ('1;0', for style.safetensors) gives 2 phases" in capsys.readouterr().err
    )


# --- rendered on tiny weights: the weight applied at each step -------------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PipelineHost:
    """The tiny two-expert Wan as Wan 2.2 T2V A14B and the tiny Wan as Wan 2.1 T2V 14B, with a Wan
    LoRA in the folder both read (wan/)."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    for model, pipe in (("wan2.2-t2v-a14b", two_expert_wan(0.875)), ("wan2.1-t2v-14b", tiny_pipeline("wan"))):
        cache_as(cache, get_model(model), pipe)
    root = tmp_path_factory.mktemp("loras")
    save_tiny_lora(root / "wan" / LORA, "wan", LoraLayout.DIFFUSERS)
    return PipelineHost(cache, device="cpu", loras=LoraLibrary(root))


def applied_and_timesteps(
    host: PipelineHost, settings: dict[str, Any], tmp_path: Path
) -> tuple[tuple[float, ...], list[float]]:
    """The weights the render applied at each step, and the job's timesteps."""
    job = resolve(parse_settings(settings), tmp_path)
    request: GenerationRequest = replace(job.generations[0].request, width=64, height=64, frames=5)
    info = host.generate(job.preset, request).info
    hot = host._hot
    assert hot is not None  # the job's scheduler is still on it: its timesteps for the job's steps
    hot.pipe.scheduler.set_timesteps(STEPS)
    return info.loras[0].weights, [float(t) for t in hot.pipe.scheduler.timesteps]


def test_three_phases_on_two_experts_change_the_weight_where_each_phase_starts(
    host: PipelineHost, tmp_path: Path
) -> None:
    weights, timesteps = applied_and_timesteps(host, THREE | {"loras_multipliers": "1;0.5;0"}, tmp_path)
    assert weights == tuple(1.0 if t > 875 else 0.5 if t > 800 else 0.0 for t in timesteps)
    assert set(weights) == {1.0, 0.5, 0.0}  # every phase ran steps


def test_two_phases_on_one_transformer_change_the_weight_at_switch_threshold(
    host: PipelineHost, tmp_path: Path
) -> None:
    weights, timesteps = applied_and_timesteps(host, WAN21 | {"loras_multipliers": "1;0"}, tmp_path)
    assert weights == tuple(1.0 if t > 750 else 0.0 for t in timesteps)
    assert set(weights) == {1.0, 0.0}
