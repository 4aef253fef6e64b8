"""WanGP's LTX-2 definitions (defaults/ltx2_*.json at Wan2GP 8681e9f7, in the fixture) against the
catalogue: each is refused with the reason that names what the farm lacks (WanGP's second render
stage, its distilled pipeline and LoRA, prequantized files, architectures without a preset), and a
settings file on LTX-2 is refused by key until it asks for what the farm renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from models.catalogue import get_model
from models.wangp_definitions import ARCHITECTURES, decide, parse_definition, with_references

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
SECOND_STAGE = "its default guidance_phases 2 is not supported yet: WanGP renders LTX-2 in two stages"
# The reason each of WanGP's LTX-2 definitions is refused for, as it starts or as it ends.
REASONS = {
    "ltx2_19B": SECOND_STAGE,
    "ltx2_22B": SECOND_STAGE,
    "ltx2_distilled": "model setting(s) not supported yet: ltx2_pipeline",
    "ltx2_22B_distilled": "model setting(s) not supported yet: ltx2_pipeline",
    "ltx2_22B_distilled_1_1": "model setting(s) not supported yet: ltx2_pipeline",
    "ltx2_22B_1_1": "model setting(s) not supported yet: ltx2_lora_distilled",
    "ltx2_19B_nvfp4": "a prequantized nvfp4 file, which the farm does not load",
    "ltx2_22B_nvfp4": "a prequantized nvfp4 file, which the farm does not load",
    "ltx2_distilled_gguf_q4_k_m": "a prequantized gguf file, which the farm does not load",
    "ltx2_distilled_gguf_q6_k": "a prequantized gguf file, which the farm does not load",
    "ltx2_distilled_gguf_q8_0": "a prequantized gguf file, which the farm does not load",
    "ltx2_22B_distilled_gguf_q4_k_m": "a prequantized gguf file, which the farm does not load",
    "ltx2_22B_distilled_gguf_q6_k": "a prequantized gguf file, which the farm does not load",
    "ltx2_22B_distilled_gguf_q8_0": "a prequantized gguf file, which the farm does not load",
    "ltx2_25_22B": "architecture 'ltx2_25_22B' is not supported yet",
    "ltx2_25_22B_distilled": "architecture 'ltx2_25_22B' is not supported yet",
    "ltx2_25_22B_distilled_nvfp4": "architecture 'ltx2_25_22B' is not supported yet",
    "ltx2_22B_edit_anything": "architecture 'ltx2_22B_edit_anything' is not supported yet",
    "ltx2_22B_1_1_edit_anything": "architecture 'ltx2_22B_edit_anything' is not supported yet",
    "ltx2_22B_distilled_edit_anything": "architecture 'ltx2_22B_edit_anything' is not supported yet",
    "ltx2_22B_distilled_1_1_edit_anything": "architecture 'ltx2_22B_edit_anything' is not supported yet",
    "ltx2_22B_msr": "architecture 'ltx2_22B_msr' is not supported yet",
    "ltx2_22B_msr_v2": "architecture 'ltx2_22B_msr' is not supported yet",
}


def test_each_ltx2_definition_is_refused_naming_what_the_farm_lacks() -> None:
    data = json.loads(FIXTURE.read_text())["definitions"]
    definitions = with_references({key: parse_definition(key, value) for key, value in data.items()})
    ltx2 = {key: d for key, d in definitions.items() if d.architecture.startswith("ltx2")}
    assert ltx2.keys() == REASONS.keys()
    presets = {model_id: get_model(model_id) for model_id in ARCHITECTURES.values()}
    for model_id, definition in ltx2.items():
        verdict = decide(definition, presets)
        assert verdict.preset is None, model_id
        assert verdict.reason.startswith(REASONS[model_id]) or verdict.reason.endswith(REASONS[model_id]), (
            model_id,
            verdict.reason,
        )


def test_ltx2_architectures_answer_to_their_catalogue_models() -> None:
    assert get_model("ltx2_19B").id == "ltx-2-19b" and get_model("ltx2_22B").id == "ltx-2.3-22b"
    for model_id in ("ltx-2-19b", "ltx-2.3-22b"):
        preset = get_model(model_id)
        assert preset.pipeline == "LTX2Pipeline" and preset.family == "ltx2" and preset.fps == 24
        assert {c.name for c in preset.components} == {
            "transformer",
            "text_encoder",
            "connectors",
            "vae",
            "audio_vae",
            "vocoder",
        }


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        # WanGP's own defaults for the 19B: two stages and LTX-2's extra guidance.
        (
            {},
            [
                "guidance_phases: 2",
                "audio_guidance_scale: 7.0",
                "alt_guidance_scale: 3.0",
                "perturbation_switch: 2",
            ],
        ),
        # One stage, but the soundtrack guided apart from the video.
        (
            {"guidance_phases": 1, "audio_guidance_scale": 5.0, "alt_guidance_scale": 1, "alt_scale": 0},
            ["audio_guidance_scale: 5.0", "perturbation_switch: 2"],
        ),
    ],
)
def test_ltx2_settings_the_farm_cannot_render_exit_2_naming_each_key(
    settings: dict[str, object], named: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model_type": "ltx2_19B", "prompt": "a fox"} | settings))
    assert main(["render", "--dry-run", str(job)]) == 2
    errors = capsys.readouterr().err
    for key in named:
        assert key in errors, key


def test_one_stage_with_plain_guidance_is_a_valid_ltx2_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "model_type": "ltx2_19B",
        "prompt": "a fox",
        "guidance_phases": 1,
        "audio_guidance_scale": 3.0,  # equal to guidance_scale: the farm guides the audio alike
        "alt_guidance_scale": 1,
        "alt_scale": 0,
        "perturbation_switch": 0,
        "video_length": 121,
    }
    job = tmp_path / "job.json"
    job.write_text(json.dumps(settings))
    assert main(["render", "--dry-run", str(job)]) == 0, capsys.readouterr().err
    # WanGP's 64-pixel block: 832x480 renders 832x448.
    assert "ltx-2-19b 832x448 frames=121 steps=40" in capsys.readouterr().out
