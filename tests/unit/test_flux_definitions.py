"""WanGP's Flux definitions (defaults/ at Wan2GP 8681e9f7, tests/fixtures/wangp) as catalogue
models: Kontext and FLUX.2 map to their presets, their own model keys and settings are read as
WanGP reads them (models/flux/flux_handler.py, flux_main.py), and what the farm cannot load is
refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from models.catalogue import catalogue
from models.wangp_definitions import decide, own_weights, parse_definition
from models.wangp_keys import KEYS, KeyClass, model_facts

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
DEFINITIONS = json.loads(FIXTURE.read_text())["definitions"]


@pytest.mark.parametrize(
    ("model_id", "preset"),
    [
        ("flux_dev_kontext", "flux.1-kontext-dev"),
        ("flux2_dev", "flux.2-dev"),
        ("flux2_klein_4b", "flux.2-klein-4b"),
        ("flux2_klein_9b", "flux.2-klein-9b"),
        ("flux2_klein_base_4b", "flux.2-klein-base-4b"),
        ("flux2_klein_base_9b", "flux.2-klein-base-9b"),
    ],
)
def test_flux_definitions_on_their_repos_weights_are_the_catalogue_models(model_id: str, preset: str) -> None:
    verdict = decide(parse_definition(model_id, DEFINITIONS[model_id]), catalogue())
    assert verdict.preset is not None and verdict.preset.id == preset and verdict.catalogue_own
    assert own_weights(verdict.preset) == ()  # the repo's folder, not a single file


def test_klein_base_takes_cfg_where_the_distilled_klein_takes_none() -> None:
    # guidance_max_phases: 1 in the base definitions, WanGP's default 0 (no guidance) otherwise.
    assert model_facts(["flux2_klein_base_4b"]).guidance_phases == 1
    assert model_facts(["flux2_klein_4b"]).guidance_phases == 0
    assert catalogue()["flux.2-klein-base-9b"].defaults.guidance_scale == 4.0
    assert catalogue()["flux.2-klein-9b"].defaults.num_inference_steps == 4


def test_a_finetune_setting_guidance_max_phases_is_refused_by_name() -> None:
    definition = {
        "model": {
            "architecture": "flux2_klein_4b",
            "URLs": ["https://x/my-klein-base_bf16.safetensors"],
            "guidance_max_phases": 1,
        }
    }
    verdict = decide(parse_definition("my_klein", definition), catalogue())
    assert verdict.preset is None
    assert verdict.reason == "model setting(s) not supported yet: guidance_max_phases"


def test_the_nvfp4_flux2_file_is_served_over_flux2_devs_folder() -> None:
    # Dequantized at load (models.prequantized), as WanGP's kernel-less fallback computes with it.
    verdict = decide(parse_definition("flux2_dev_nvfp4", DEFINITIONS["flux2_dev_nvfp4"]), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert verdict.preset.derived_from == "flux.2-dev"
    assert verdict.preset.wangp_weights[0].endswith("flux2-dev-nvfp4-mixed.safetensors")


def test_sampling_steps_changes_nothing_as_in_wangp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # flux2_dev.json sets sampling_steps, which WanGP never reads as a setting (its generate() takes
    # num_inference_steps under that name): the steps stay num_inference_steps's.
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model_type": "flux2_dev", "prompt": "a hat", "sampling_steps": 12}))
    assert main(["render", "--dry-run", str(job)]) == 0
    captured = capsys.readouterr()
    assert "flux.2-dev 1024x1024 frames=1 steps=30 " in captured.out and "sampling_steps" not in captured.err
    assert KEYS["sampling_steps"].kind is KeyClass.BOOKKEEPING
