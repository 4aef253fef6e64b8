"""The table of WanGP's keys against WanGP's own files, and what a user sees on every path in: each
model's WanGP defaults render or are refused naming exactly the keys WanFarm cannot follow; a key
that would change WanGP's output is refused by name (exit 2 on the command line, 422 over REST);
one at its no-op value passes silently; metadata claims nothing that was not rendered.

The fixtures under tests/fixtures/wangp/ are WanGP's data at commit 8681e9f7 (see their README).
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from controller.api.app import create_app
from controller.auth import KeyRing
from controller.cli import main
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from models.catalogue import Output, Task, catalogue, get_model
from models.settings import Job, SettingsError, parse_settings, resolve
from models.wangp_keys import (
    KEYS,
    MODEL_FACTS,
    KeyClass,
    ModelFacts,
    Reading,
    counts,
    model_facts,
    refusals,
)
from tests.unit.served_app import serve

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wangp"
PRIMARY: dict[str, Any] = json.loads((FIXTURES / "_settings.json").read_text())
FACTORY: dict[str, dict[str, Any]] = json.loads((FIXTURES / "factory_overrides.json").read_text())
# Audio models (Stable Audio 3) have no WanGP export fixtures here yet and no picture size: their
# keys are checked by tests/integration/test_render_audio.py.
WANGP_TYPES = sorted(
    t for preset in catalogue().values() if preset.audio is None for t in preset.wangp_model_types
)
# The WanGP defaults of our models that WanFarm cannot render as WanGP does, and the keys it names.
CANNOT_RENDER: dict[str, set[str]] = {
    # None today. LTX-2 (models/ltx2/ltx2_handler.py) renders as WanGP does: its two stages
    # (guidance_phases 2), the 22B's distilled_8_steps, and the 19B's guidance passes of
    # defaults/ltx2_19B.json (audio CFG 7, modality 3, rescale 0.7, skip attention at block 29).
}
# Keys a settings file, a queue entry or an output's metadata holds besides models/_settings.json
# (wgp.py save_inputs, generate_media, _save_queue_to_zip, fix_settings' older names).
WRITTEN_BESIDES = (
    "mode",
    "model_type",
    "type",
    "settings_version",
    "base_model_type",
    "model_filename",
    "lset_name",
    "generation_time",
    "creation_date",
    "creation_timestamp",
    "image_quality",
    "video_quality",
    "hdr",
    "hdr_video_crf",
    "modules",
    "transformer_loras_filenames",
    "transformer_loras_multipliers",
    "window_no",
    "enhanced_prompt",
    "enhanced_alt_prompt",
    "postprocess_audio_seed",
    "audio_postprocess",
    "prompts",
    "tea_cache_setting",
    "tea_cache_start_step_perc",
    "slg_switch",
    "slg_layers",
    "slg_start_perc",
    "slg_end_perc",
)


def wangp_defaults(model_type: str) -> dict[str, Any]:
    """The settings of WanGP's defaults/<model_type>.json: its top-level keys beside "model"."""
    data = json.loads((FIXTURES / "defaults" / f"{model_type}.json").read_text())
    data.pop("model")
    return data


def wangp_export(model_type: str) -> dict[str, Any]:
    """A settings object as WanGP writes one for a model never touched in its UI: every key at the
    model's default (get_factory_settings: _settings.json, then the handler's and the file's own),
    with what an export or a queue entry adds. Attachments stay null."""
    export = PRIMARY | FACTORY[model_type] | wangp_defaults(model_type)
    # prepare_inputs_dict: a model without custom settings writes none.
    return export | {
        "custom_settings": None,
        "mode": "",
        "model_type": model_type,
        "model_filename": f"ckpts/{model_type}_quanto_mbf16_int8.safetensors",
        "type": f"WanGP v10 by DeepBeepMeep - {model_type}",
        "settings_version": 2.74,
    }


def start_image(folder: Path, size: tuple[int, int] = (832, 480)) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 120, 40)).save(folder / "start.png")
    return "start.png"


def with_image(model_type: str, settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Image-to-video settings get a start image of the model's own shape, as WanGP's form would
    hold one."""
    preset = get_model(model_type)
    if MODEL_FACTS[model_type].guide_letters:  # an editor's form holds the video it edits
        (folder / "source.mp4").write_bytes(b"resolve checks that the file is there, not its frames")
        return settings | {"video_guide": "source.mp4"}
    if preset.task is Task.I2V:
        width, height = (int(side) for side in preset.defaults.resolution.split("x"))
        return settings | {"image_start": start_image(folder, (width, height))}
    return settings


def refused_keys(settings: dict[str, Any], folder: Path) -> set[str]:
    try:
        resolve(parse_settings(settings), folder)
    except SettingsError as error:
        return {problem.split(":")[0] for problem in error.problems}
    return set()


# --- the table ---------------------------------------------------------------------------------------


def test_the_table_holds_every_key_wangp_writes() -> None:
    missing = [key for key in (*PRIMARY, *WRITTEN_BESIDES) if key not in KEYS]
    assert missing == []


def test_each_key_has_wangps_default() -> None:
    # custom_settings is written null for a model that declares none (prepare_inputs_dict).
    differ = {
        k: (v, KEYS[k].default) for k, v in PRIMARY.items() if k != "custom_settings" and KEYS[k].default != v
    }
    assert differ == {}


def test_noop_only_keys_and_only_they_carry_a_rule() -> None:
    for row in KEYS.values():
        assert (row.noop is not None) == (row.kind is KeyClass.NOOP_ONLY), row.key
        assert row.does, row.key


def test_the_docs_state_the_counts_of_the_table() -> None:
    text = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    found = re.search(r"(\d+) applied, (\d+) accepted only at their no-op value and (\d+) bookkeeping", text)
    assert found is not None
    assert tuple(map(int, found.groups())) == tuple(counts().values())


def test_every_wangp_model_of_the_catalogue_has_its_facts() -> None:
    assert [t for t in WANGP_TYPES if t not in MODEL_FACTS] == []
    assert all(model_facts(get_model(t).wangp_model_types) is MODEL_FACTS[t] for t in WANGP_TYPES)


# WanGP's vae_block_size (models/wan, ltx_video handlers; 16 when unset), which the catalogue's size
# multiple must equal for the flooring to be WanGP's.
# LTX-2 (models/ltx2/ltx2_handler.py query_model_def): vae_block_size 64.
BLOCK = {
    "ti2v_2_2": 32,
    "ltxv_13B": 32,
    "ltxv_distilled": 32,
    "lucy_edit": 32,
    "ltx2_19B": 64,
    "ltx2_22B": 64,
}


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_sizes_floor_to_wangps_block(model_type: str) -> None:
    assert get_model(model_type).sizes.multiple == BLOCK.get(model_type, 16)


# --- WanGP's own defaults of each model --------------------------------------------------------------


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_wangps_export_of_each_model_renders_or_names_what_cannot_be(model_type: str, tmp_path: Path) -> None:
    settings = with_image(model_type, wangp_export(model_type), tmp_path)
    assert refused_keys(settings, tmp_path) == CANNOT_RENDER.get(model_type, set())


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_wangps_defaults_file_alone_renders_or_names_what_cannot_be(model_type: str, tmp_path: Path) -> None:
    settings = with_image(model_type, wangp_defaults(model_type) | {"model_type": model_type}, tmp_path)
    assert refused_keys(settings, tmp_path) == CANNOT_RENDER.get(model_type, set())


def test_wan22_renders_its_low_noise_expert_at_its_own_guidance(tmp_path: Path) -> None:
    # WanGP's t2v_2_2 defaults: 4 for the high-noise expert (phase 1), 3 for the low-noise one.
    (generation,) = resolve(parse_settings(wangp_export("t2v_2_2")), tmp_path).generations
    assert (generation.request.guidance_scale, generation.request.guidance_scale_2) == (4.0, 3.0)
    assert (generation.metadata["guidance_scale"], generation.metadata["guidance2_scale"]) == (4.0, 3.0)
    one_phase = resolve(parse_settings(wangp_export("t2v")), tmp_path).generations[0].request
    assert one_phase.guidance_scale_2 is None


# What a job names instead of a refused default, where models/_settings.json's value would be refused
# too (a sampler WanFarm does not run; none of the models of CANNOT_RENDER today).
NAMED_INSTEAD: dict[str, Any] = {"sample_solver": "euler"}


def renderable_export(model_type: str, folder: Path) -> dict[str, Any]:
    """WanGP's export of the model, with its image, as WanFarm renders it: for a model whose defaults
    WanFarm cannot render (CANNOT_RENDER, refused by name above), the keys it names at their
    models/_settings.json value (or NAMED_INSTEAD; the audio guidance at the video's on LTX-2), the
    rest as WanGP's."""
    export = with_image(model_type, wangp_export(model_type), folder)
    export |= {"guidance2_scale": export["guidance_scale"]}  # Wan 2.2 t2v, see above
    refused = CANNOT_RENDER.get(model_type, set())
    export |= {key: NAMED_INSTEAD.get(key, PRIMARY[key]) for key in refused}
    if MODEL_FACTS[model_type].audio_follows_guidance and "audio_guidance_scale" in refused:
        export["audio_guidance_scale"] = export["guidance_scale"]
    return export


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_wangps_exports_render_with_wangps_values(model_type: str, tmp_path: Path) -> None:
    export = renderable_export(model_type, tmp_path)
    facts = MODEL_FACTS[model_type]
    request = resolve(parse_settings(export), tmp_path).generations[0].request
    preset = get_model(model_type)
    guidance = export["embedded_guidance_scale"] if facts.embedded_guidance else export["guidance_scale"]
    if facts.guidance_phases == 0 and not facts.embedded_guidance:
        guidance = preset.defaults.guidance_scale  # WanGP reads no guidance for it
    assert request.guidance_scale == guidance
    assert request.flow_shift == (export["flow_shift"] if facts.flow_shift else preset.defaults.flow_shift)
    assert request.steps == export["num_inference_steps"]
    assert request.batch_size == 1


# --- each key WanFarm cannot follow, named -----------------------------------------------------------

# A model that reads every key (so that none is ignored): two experts switching at 875.
CAPABLE = ModelFacts(
    guidance_phases=3, expert_switch=875, samplers=("unipc",), sliding_window=True, riflex=True
)
CAPABLE = replace(CAPABLE, audio=True, alt_prompt=True, custom_settings=True, input_video_strength=True)
# For each key accepted only at its no-op value: a value that does something, with the keys that
# make WanGP read it.
DOES_SOMETHING: dict[str, tuple[object, dict[str, object]]] = {
    "mode": ("edit_audio", {}),
    "image_mode": (2, {}),
    "prompt_enhancer": ("T", {}),
    "alt_prompt": ("a second prompt", {}),
    "image_guide": ("guide.png", {}),
    "image_mask": ("mask.png", {}),
    "video_guide2": ("guide2.mp4", {}),
    "video_source": ("source.mp4", {}),
    "audio_guide": ("speech.wav", {}),
    "audio_guide2": ("speech2.wav", {}),
    "audio_source": ("music.wav", {}),
    "custom_guide": ("guide.bin", {}),
    "replace_voice_sample": ("voice.wav", {}),
    "replace_voice_sample2": ("voice2.wav", {}),
    "video_prompt_type": ("VG", {}),
    "audio_prompt_type": ("A", {}),
    "model_mode": (2, {"image_mode": 2}),
    "custom_settings": ({"speech_speed": 1.5}, {}),
    "force_fps": (30, {}),
    "multi_images_gen_type": (1, {"image_start": ["a.png", "b.png"]}),
    "pause_seconds": (1, {}),
    "motion_amplitude": (1.5, {}),
    "keep_frames_video_source": ("5", {"image_prompt_type": "V"}),
    "keep_frames_video_guide": ("1:10", {"video_prompt_type": "V"}),
    "video_guide_outpainting": ("10 10 0 0", {}),
    "video_guide_outpainting_ratio": ("16:9", {"video_prompt_type": "V"}),
    "denoising_strength": (0.5, {"video_prompt_type": "VG"}),
    "masking_strength": (0.5, {"video_prompt_type": "VG"}),
    "input_video_strength": (0.5, {}),
    "mask_expand": (4, {"video_prompt_type": "VA"}),
    "frames_positions": ("1", {"video_prompt_type": "F"}),
    "image_refs_relative_size": (30, {"video_prompt_type": "I"}),
    "remove_background_images_ref": (1, {"video_prompt_type": "I"}),
    "min_frames_if_references": (5, {"video_prompt_type": "I"}),
    "control_net_weight": (0.5, {"video_prompt_type": "V"}),
    "control_net_weight2": (0.5, {"video_prompt_type": "V"}),
    "control_net_weight_alt": (0.5, {"video_prompt_type": "V"}),
    "speakers_locations": ("0:50", {}),
    # Wan 2.2's experts render the low-noise phase's own scale and switch; a phase change on one
    # expert (here model_switch_phase 2 puts phases 1 and 2 on the high-noise one) is not rendered.
    "guidance2_scale": (3, {"guidance_phases": 3, "model_switch_phase": 2, "switch_threshold": 875}),
    "guidance3_scale": (3, {"guidance_phases": 3, "switch_threshold": 875, "switch_threshold2": 500}),
    "switch_threshold": (500, {"guidance_phases": 3, "model_switch_phase": 2, "guidance2_scale": 3}),
    "switch_threshold2": (300, {"guidance_phases": 3, "switch_threshold": 875, "guidance3_scale": 3}),
    "model_switch_phase": (3, {"guidance_phases": 3}),
    "alt_guidance_scale": (2, {}),
    "alt_scale": (0.5, {}),
    "audio_guidance_scale": (4, {}),
    "audio_scale": (2, {}),
    "NAG_scale": (2, {}),
    "NAG_tau": (2, {"NAG_scale": 2}),
    "NAG_alpha": (0.2, {"NAG_scale": 2}),
    "perturbation_switch": (1, {}),
    "perturbation_layers": ([10], {"perturbation_switch": 1}),
    "perturbation_start_perc": (20, {"perturbation_switch": 1}),
    "perturbation_end_perc": (80, {"perturbation_switch": 1}),
    "apg_switch": (1, {}),
    "cfg_star_switch": (1, {}),
    "cfg_zero_step": (2, {}),
    "self_refiner_setting": (1, {}),
    "self_refiner_plan": ("1-5", {"self_refiner_setting": 1}),
    "self_refiner_f_uncertainty": (0.1, {"self_refiner_setting": 1}),
    "self_refiner_certain_percentage": (0.9, {"self_refiner_setting": 1}),
    "temperature": (1.0, {}),
    "top_p": (0.5, {}),
    "top_k": (10, {}),
    "RIFLEx_setting": (1, {}),
    "sliding_window_color_correction_strength": (0.5, {"sliding_window_size": 33}),
    "sliding_window_overlap_noise": (20, {"sliding_window_size": 33}),
    "sliding_window_trim_first_frames": (4, {"sliding_window_size": 33}),
    "sub_parallel_window_size": (8, {"sliding_window_size": 33}),
    "sub_parallel_window_overlap": (9, {"sliding_window_size": 33}),
    "temporal_upsampling": ("film2", {}),  # a temporal upsampler of no installed plugin
    "postprocess_audio": ("mmaudio", {}),
    "postprocess_audio_prompt": ("rain", {"postprocess_audio": "mmaudio"}),
    "postprocess_audio_neg_prompt": ("music", {"postprocess_audio": "mmaudio"}),
    "replace_voice_method": ("seedvc", {}),
    "attention_sparsity": (0.5, {"override_attention": "sol"}),
    "config": ("alternative", {}),
    "prompts": ("an old prompt", {}),
    "slg_switch": (1, {}),
    "slg_layers": ([9], {"slg_switch": 1}),
    "slg_start_perc": (20, {"slg_switch": 1}),
    "slg_end_perc": (80, {"slg_switch": 1}),
}
NOOP_ONLY = sorted(key for key, row in KEYS.items() if row.kind is KeyClass.NOOP_ONLY)


def capable_reading(given: dict[str, object]) -> Reading:
    applied = {"video_length": 81, "guidance_scale": 5.0}
    return Reading("capable", CAPABLE, {"guidance_phases": 2} | given, applied, video=True, fps=16)


def test_every_noop_only_key_has_a_value_that_does_something() -> None:
    assert sorted(DOES_SOMETHING) == NOOP_ONLY


@pytest.mark.parametrize("key", NOOP_ONLY)
def test_a_value_that_does_something_is_refused_naming_the_key_value_and_why(key: str) -> None:
    value, context = DOES_SOMETHING[key]
    problems = refusals(capable_reading(context | {key: value}))
    [line] = [p for p in problems if p.startswith(f"{key}: ")]
    assert f"{key}: {json.dumps(value)} is not supported by WanFarm yet: {KEYS[key].does}" in line


@pytest.mark.parametrize("key", NOOP_ONLY)
def test_at_its_wangp_default_each_key_passes_silently(key: str, tmp_path: Path) -> None:
    settings = {"model_type": "t2v", "prompt": "a fox", key: KEYS[key].default}
    job = resolve(parse_settings(settings), tmp_path)
    assert job.warnings == []


# Keys no model of the catalogue reads (audio, a second prompt, custom settings): any value passes.
INERT_ON_THE_CATALOGUE = {
    "alt_prompt",
    "alt_guidance_scale",
    "alt_scale",
    "custom_settings",
    "pause_seconds",
    "input_video_strength",
    "speakers_locations",
    "audio_guidance_scale",
    "audio_scale",
    "temperature",
    "top_p",
    "top_k",
}


@pytest.mark.parametrize("key", [k for k in NOOP_ONLY if k not in INERT_ON_THE_CATALOGUE])
def test_on_wan22_a_value_that_does_something_is_refused_by_name(key: str, tmp_path: Path) -> None:
    value, context = DOES_SOMETHING[key]
    settings = {"model_type": "t2v_2_2", "prompt": "a fox", "guidance2_scale": 4} | context | {key: value}
    assert key in refused_keys(settings, tmp_path)


@pytest.mark.parametrize("key", sorted(INERT_ON_THE_CATALOGUE))
def test_a_key_no_model_reads_passes_at_any_value(key: str, tmp_path: Path) -> None:
    value, context = DOES_SOMETHING[key]
    assert refused_keys({"model_type": "t2v", "prompt": "a fox"} | context | {key: value}, tmp_path) == set()


def test_duration_seconds_is_applied_on_audio_models_and_refused_on_a_video_model(tmp_path: Path) -> None:
    # An audio model renders duration_seconds (models.audio_call); a video model refuses it by name.
    assert KEYS["duration_seconds"].kind is KeyClass.APPLIED
    settings = {"model_type": "t2v_2_2", "prompt": "a fox", "guidance2_scale": 4, "duration_seconds": 5}
    assert "duration_seconds" in refused_keys(settings, tmp_path)


def _refusal(settings: dict[str, Any], folder: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(parse_settings(settings), folder)
    return str(caught.value)


# --- metadata: what was rendered ---------------------------------------------------------------------


def _rendered(model_type: str, folder: Path) -> tuple[Job, dict[str, Any]]:
    export = renderable_export(model_type, folder)
    return resolve(parse_settings(export), folder), export


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_metadata_holds_no_key_at_a_value_that_was_not_rendered(model_type: str, tmp_path: Path) -> None:
    job, _ = _rendered(model_type, tmp_path)
    metadata = job.generations[0].metadata
    preset = job.preset
    reading = Reading(
        model_type,
        MODEL_FACTS[model_type],
        metadata,
        {"video_length": job.work.frames, "guidance_scale": job.generations[0].request.guidance_scale},
        video=preset.output is Output.VIDEO,
        fps=preset.fps,
    )
    assert refusals(reading) == []
    for key in metadata:
        row = KEYS[key]
        assert not row.of_the_run, key
    assert "model_filename" not in metadata and "type" not in metadata


@pytest.mark.parametrize("model_type", WANGP_TYPES)
def test_metadata_records_the_applied_keys_at_the_values_used(model_type: str, tmp_path: Path) -> None:
    job, _ = _rendered(model_type, tmp_path)
    request = job.generations[0].request
    metadata = job.generations[0].metadata
    facts = MODEL_FACTS[model_type]
    guidance_key = "embedded_guidance_scale" if facts.embedded_guidance else "guidance_scale"
    assert metadata[guidance_key] == request.guidance_scale
    assert metadata["num_inference_steps"] == request.steps and metadata["seed"] == request.seed
    assert metadata["resolution"] == f"{request.width}x{request.height}"
    assert metadata.get("flow_shift") == request.flow_shift
    assert metadata["sample_solver"] == request.sample_solver


# --- sizes as WanGP renders them ---------------------------------------------------------------------


def test_ti2v_at_1280x720_renders_1280x704_as_wangp_floors_it(tmp_path: Path) -> None:
    job = resolve(parse_settings({"model_type": "ti2v_2_2", "resolution": "1280x720"}), tmp_path)
    request = job.generations[0].request
    assert (request.width, request.height) == (1280, 704)
    assert (job.work.width, job.work.height) == (1280, 704)
    assert job.generations[0].metadata["resolution"] == "1280x704"


def test_a_start_image_sets_the_aspect_ratio_at_the_canvas_pixel_count(tmp_path: Path) -> None:
    # calculate_new_dimensions: sqrt(832*480 / (640*480)) = 1.14, so 640x480 becomes 736x544.
    name = start_image(tmp_path, (640, 480))
    job = resolve(parse_settings({"model_type": "i2v", "image_start": name}), tmp_path)
    request = job.generations[0].request
    assert (request.width, request.height) == (736, 544)
    # The canvas reproduces the render: WanGP fits the image to it again.
    assert job.generations[0].metadata["resolution"] == "832x480"


def test_a_size_outside_the_model_after_flooring_names_both(tmp_path: Path) -> None:
    message = _refusal({"model_type": "t2v", "resolution": "250x480"}, tmp_path)
    assert "resolution: 250x480 (rendered 240x480 once floored to the model's block)" in message
    assert "between 256 and 1920" in message


# --- the two ways in: the command line and REST ------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"model_type": "wan-tiny", "prompt": "a fox", "temporal_upsampling": "film2"},
            "temporal_upsampling",
        ),
        # Phase 3 (from 500 down) on the low-noise expert at 5, phase 2 there at 3.
        (wangp_export("t2v_2_2") | {"guidance_phases": 3, "switch_threshold2": 500}, "guidance3_scale"),
    ],
    ids=["no plugin's temporal upsampler", "wan 2.2 three phases"],
)
def test_a_dry_run_exits_2_naming_the_key(
    settings: dict[str, Any], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(settings))
    assert main(["render", "--dry-run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"job.json: {named}: " in err and "is not supported by WanFarm yet" in err


def test_a_dry_run_of_a_noop_value_is_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(wangp_export("t2v_1.3B")))
    assert main(["render", "--dry-run", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.fixture
def farm_url(tmp_path: Path) -> Iterator[str]:
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: [], time.time)
        with serve(create_app(service, KeyRing({}), lambda: [])) as url:
            yield url


def post(url: str, body: object) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    try:
        connection.request("POST", "/v1/jobs", json.dumps(body), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_rest_refuses_with_422_naming_the_key(farm_url: str) -> None:
    settings = wangp_export("t2v_2_2") | {"guidance_phases": 3, "switch_threshold2": 500}
    status, body = post(farm_url, {"settings": settings, "wait_for_capacity": True})
    assert status == 422, body
    assert any(line.startswith("settings: guidance3_scale: 5 is not supported") for line in body["detail"])


def test_rest_accepts_wangps_export_of_a_model_it_renders(farm_url: str) -> None:
    status, body = post(farm_url, {"settings": wangp_export("t2v"), "wait_for_capacity": True})
    assert status == 201, body
    assert body["warnings"] == []
