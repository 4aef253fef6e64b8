"""WanGP's LTX-2 definitions (defaults/ltx2_*.json at Wan2GP 8681e9f7, in the fixture) against the
catalogue: the 19B and LTX-2.3 ones render WanGP's two stages (dev, its distilled_8_steps sampler,
the distilled checkpoints, the 19B distilled ones with their own text connectors, the 1.1 LoRA) with
their own defaults; the others are refused with the reason that names what the farm lacks
(architectures without a preset), and a settings file on LTX-2 is refused by key until it asks for
what the farm renders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from models.catalogue import get_model
from models.ltx2_connectors import connectors_url
from models.ltx2_stages import DISTILLED_SIGMAS, LTX23_SECOND_STAGE_SIGMAS, SECOND_STAGE_SIGMAS, Guidance
from models.settings import parse_settings, resolve
from models.wangp_definitions import (
    ARCHITECTURES,
    WangpDefinition,
    decide,
    own_weights,
    parse_definition,
    with_references,
)
from tests.served_definitions import definitions_folder

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
# The definitions served, each with the catalogue model it renders on.
SERVED = {
    "ltx2_19B": "ltx-2-19b",
    "ltx2_22B": "ltx-2.3-22b",
    "ltx2_22B_1_1": "ltx-2.3-22b",
    "ltx2_22B_distilled": "ltx-2.3-22b",
    "ltx2_22B_distilled_1_1": "ltx-2.3-22b",
    # Prequantized files, dequantized at load (models.prequantized).
    "ltx2_19B_nvfp4": "ltx-2-19b",
    "ltx2_22B_nvfp4": "ltx-2.3-22b",
    "ltx2_22B_distilled_gguf_q4_k_m": "ltx-2.3-22b",
    "ltx2_22B_distilled_gguf_q6_k": "ltx-2.3-22b",
    "ltx2_22B_distilled_gguf_q8_0": "ltx-2.3-22b",
    # The 19B's distilled checkpoints, over the 19B's folder with their own text connectors.
    "ltx2_distilled": "ltx-2-19b",
    "ltx2_distilled_gguf_q4_k_m": "ltx-2-19b",
    "ltx2_distilled_gguf_q6_k": "ltx-2-19b",
    "ltx2_distilled_gguf_q8_0": "ltx-2-19b",
}
# The reason each of the others is refused for, as it starts or as it ends.
REASONS = {
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


def fixture_data() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(FIXTURE.read_text())["definitions"]
    return data


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """WanGP's LTX-2.3 definitions served from a $WANFARM_MODELS folder."""
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        for model_id in SERVED:
            (folder / f"{model_id}.json").write_text(json.dumps(fixture_data()[model_id]))
        yield folder


def ltx2_definitions() -> dict[str, WangpDefinition]:
    data = fixture_data()
    definitions = with_references({key: parse_definition(key, value) for key, value in data.items()})
    return {key: d for key, d in definitions.items() if d.architecture.startswith("ltx2")}


def test_each_ltx2_definition_is_served_or_refused_naming_what_the_farm_lacks() -> None:
    ltx2 = ltx2_definitions()
    assert ltx2.keys() == REASONS.keys() | SERVED.keys()
    presets = {model_id: get_model(model_id) for model_id in ARCHITECTURES.values()}
    for model_id, definition in ltx2.items():
        verdict = decide(definition, presets)
        if model_id in SERVED:
            assert verdict.preset is not None, (model_id, verdict.reason)
            assert SERVED[model_id] in (verdict.preset.id, verdict.preset.derived_from)
            continue
        assert verdict.preset is None, model_id
        assert verdict.reason.startswith(REASONS[model_id]) or verdict.reason.endswith(REASONS[model_id]), (
            model_id,
            verdict.reason,
        )


def test_the_19bs_defaults_render_ltx2s_guidance_passes_in_its_first_stage(tmp_path: Path) -> None:
    (generation,) = resolve(
        parse_settings({"model_type": "ltx2_19B", "prompt": "a fox"}), tmp_path
    ).generations
    # defaults/ltx2_19B.json: audio CFG 7, modality guidance 3, rescale 0.7, skip attention at block 29.
    assert generation.request.ltx2_guidance == Guidance(
        audio_scale=7.0, modality=3.0, rescale=0.7, skip_blocks=(29,)
    )
    plan = generation.request.ltx2_stages
    assert plan is not None and plan.steps == (40, 3) and plan.lora_weights == (0.0, 1.0)
    assert plan.lora.endswith("ltx-2-19b-distilled-lora-384.safetensors")


@pytest.mark.parametrize(
    ("model_id", "first", "lora", "weights"),
    [
        # The dev defaults: distilled_8_steps, the 1.1 LoRA at 0.5 in both stages.
        ("ltx2_22B", 8, "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", (0.5, 0.5)),
        ("ltx2_22B_1_1", 8, "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", (0.5, 0.5)),
        # The distilled checkpoints: their schedule in both stages, no LoRA.
        ("ltx2_22B_distilled", 8, "", (0.0, 0.0)),
        ("ltx2_22B_distilled_1_1", 8, "", (0.0, 0.0)),
    ],
)
def test_served_ltx2_definitions_render_two_stages_with_their_defaults(
    model_id: str, first: int, lora: str, weights: tuple[float, float], models_dir: Path, tmp_path: Path
) -> None:
    defaults = {key: value for key, value in fixture_data()[model_id].items() if key != "model"}
    job = resolve(parse_settings(defaults | {"model_type": model_id}), tmp_path)
    (generation,) = job.generations
    plan = generation.request.ltx2_stages
    assert plan is not None and plan.steps == (first, 3)
    assert plan.lora.endswith(lora) if lora else plan.lora == ""
    assert plan.lora_weights == weights
    assert plan.second_sigmas == LTX23_SECOND_STAGE_SIGMAS
    assert (generation.request.width, generation.request.height) == (1280, 704)
    assert generation.metadata["guidance_phases"] == 2 and generation.request.guidance_scale == 1.0


@pytest.mark.parametrize(
    ("model_id", "transformer"),
    [
        ("ltx2_distilled", "ltx-2-19b-distilled_diffusion_model.safetensors"),
        ("ltx2_distilled_gguf_q4_k_m", "ltx-2-19b-distilled_Q4_K_M.gguf"),
        ("ltx2_distilled_gguf_q8_0", "ltx-2-19b-distilled_Q8_0.gguf"),
    ],
)
def test_the_19bs_distilled_checkpoints_render_with_their_own_transformer_and_text_connectors(
    model_id: str, transformer: str, models_dir: Path, tmp_path: Path
) -> None:
    preset = get_model(model_id)
    # WanGP's handler (_get_embeddings_connector_filename) reads the distilled checkpoint's own
    # connectors file, which no definition names; the transformer is the definition's first file.
    assert connectors_url(preset) == (
        "https://huggingface.co/DeepBeepMeep/LTX-2/resolve/main/ltx-2-19b-distilled_embeddings_connector.safetensors"
    )
    assert [url.rsplit("/", 1)[-1] for url in own_weights(preset)][:1] == [transformer]
    defaults = {key: value for key, value in fixture_data()[model_id].items() if key != "model"}
    (generation,) = resolve(parse_settings(defaults | {"model_type": model_id}), tmp_path).generations
    plan = generation.request.ltx2_stages
    # Both stages on the distilled schedule, no LoRA, no guidance: the 19B's second-stage sigmas.
    assert plan is not None and plan.first_sigmas == DISTILLED_SIGMAS
    assert plan.second_sigmas == SECOND_STAGE_SIGMAS and plan.lora == ""
    assert generation.request.guidance_scale == 1.0 and generation.request.frames == 241


def test_the_dev_19b_and_the_22b_render_their_folders_connectors(models_dir: Path) -> None:
    for model_id in ("ltx2_19B", "ltx2_19B_nvfp4", "ltx2_22B_distilled", "ltx2_22B_distilled_gguf_q8_0"):
        assert connectors_url(get_model(model_id)) == "", model_id


def test_one_stage_of_the_distilled_schedules_renders_as_wangps(models_dir: Path, tmp_path: Path) -> None:
    # WanGP's skip_stage_2: distilled_8_steps with the 1.1 LoRA at 0.5; the distilled checkpoints bare.
    for model_id, lora, weights in (
        ("ltx2_22B", "ltx-2.3-22b-distilled-lora-384-1.1.safetensors", (0.5, 0.0)),
        ("ltx2_22B_distilled", "", (0.0, 0.0)),
    ):
        settings = {"model_type": model_id, "prompt": "a fox", "guidance_phases": 1}
        (generation,) = resolve(parse_settings(settings), tmp_path).generations
        plan = generation.request.ltx2_stages
        assert plan is not None and not plan.two and plan.first_sigmas == DISTILLED_SIGMAS, model_id
        assert plan.lora.endswith(lora) if lora else plan.lora == ""
        assert plan.lora_weights == weights and generation.metadata["guidance_phases"] == 1


def test_the_lora_a_definition_names_replaces_the_dev_pipelines_own_on_euler(
    models_dir: Path, tmp_path: Path
) -> None:
    settings = {
        "model_type": "ltx2_22B_1_1",
        "prompt": "a fox",
        "sample_solver": "euler",
        "num_inference_steps": 30,
    }
    plan = resolve(parse_settings(settings), tmp_path).generations[0].request.ltx2_stages
    assert plan is not None and plan.steps == (30, 3) and plan.lora_weights == (0.0, 1.0)
    assert plan.lora == "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"  # ltx2_lora_distilled


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
            "latent_upsampler",  # the second render stage's
        }


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        # The soundtrack guided without the video: diffusers runs CFG for both or neither.
        (
            {"guidance_scale": 1.0},
            ["audio_guidance_scale: 7 is not supported by WanFarm yet with guidance_scale 1"],
        ),
        # WanGP's older skip-layer guidance, and skip-attention guidance over part of the steps.
        ({"perturbation_switch": 1}, ["perturbation_switch: 1 is not supported by WanFarm yet on LTX-2"]),
        (
            {"perturbation_start_perc": 10, "perturbation_end_perc": 90},
            ["perturbation_start_perc: 10", "_end_perc: 90"],
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
