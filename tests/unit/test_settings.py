"""WanGP settings: defaults, seeds, unknown keys, and errors that name the key and the rule.

Types are WanGP's: its own settings files (defaults/*.json of deepbeepmeep/Wan2GP at commit
8681e9f777f9f847f74a0bdefd13d5b9a6efe12d) hold JSON numbers for numeric keys (ints for counts, ints
or floats for scales) and "WIDTHxHEIGHT" strings; a number written as a string is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.attachments import SEND_ATTACHMENTS, Attachments
from models.profiles import Profile
from models.settings import MAX_PROMPT_CHARS, MAX_SEED, Job, SettingsError, parse_settings, resolve

WAN = {"model_type": "wan-tiny", "prompt": "a fox", "resolution": "64x64", "video_length": 9}


def _problems(data: object, tmp_path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(parse_settings(data), tmp_path)
    return str(caught.value)


def test_defaults_of_the_model_fill_missing_keys(tmp_path: Path) -> None:
    job = resolve(parse_settings({"model_type": "wan-tiny", "prompt": "x"}), tmp_path)
    request = job.generations[0].request
    assert (request.width, request.height) == (64, 64)
    assert request.steps == job.preset.defaults.num_inference_steps
    assert request.flow_shift == job.preset.defaults.flow_shift


def test_wangp_model_type_ids_resolve_to_catalogue_models(tmp_path: Path) -> None:
    job = resolve(
        parse_settings({"model_type": "t2v_1.3B", "resolution": "832x480", "video_length": 81}), tmp_path
    )
    assert job.preset.pipeline == "WanPipeline"


def test_random_seed_is_drawn_and_recorded(tmp_path: Path) -> None:
    job = resolve(parse_settings(WAN | {"seed": -1}), tmp_path)
    seed = job.generations[0].request.seed
    assert 0 <= seed <= MAX_SEED
    assert job.generations[0].metadata["seed"] == seed


def test_repeats_step_a_fixed_seed(tmp_path: Path) -> None:
    job = resolve(parse_settings(WAN | {"seed": 10, "repeat_generation": 3}), tmp_path)
    assert [g.request.seed for g in job.generations] == [10, 11, 12]
    assert all(g.metadata["repeat_generation"] == 1 for g in job.generations)


def test_unknown_keys_are_kept_and_reported(tmp_path: Path) -> None:
    job = resolve(parse_settings(WAN | {"my_note": "tea", "generation_time": 3}), tmp_path)
    assert job.generations[0].metadata["my_note"] == "tea"
    assert job.warnings == ["unknown key kept but not used: my_note"]


def test_unknown_model_names_the_key_and_the_choices(tmp_path: Path) -> None:
    message = _problems(WAN | {"model_type": "sora"}, tmp_path)
    assert "model_type" in message and "unknown model 'sora'" in message and "wan-tiny" in message


def test_frames_must_be_4k_plus_1_for_wan(tmp_path: Path) -> None:
    message = _problems(WAN | {"video_length": 8}, tmp_path)
    assert "video_length: 8 is not allowed" in message and "4k+1" in message


def test_sides_are_floored_to_the_models_block_as_wangp_does(tmp_path: Path) -> None:
    job = resolve(parse_settings(WAN | {"resolution": "79x64"}), tmp_path)
    assert (job.work.width, job.work.height) == (64, 64)
    assert job.generations[0].metadata["resolution"] == "64x64"
    message = _problems(WAN | {"resolution": "31x64"}, tmp_path)
    assert "resolution: 31x64 (rendered 16x64 once floored to the model's block)" in message
    assert "between 32 and 256" in message


def test_resolution_must_be_width_x_height(tmp_path: Path) -> None:
    assert 'resolution: must be "WIDTHxHEIGHT"' in _problems(WAN | {"resolution": "big"}, tmp_path)


def test_negative_steps_are_refused(tmp_path: Path) -> None:
    message = _problems(WAN | {"num_inference_steps": -3}, tmp_path)
    assert "num_inference_steps" in message and "greater than or equal to 1" in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    message = _problems(WAN | {"num_inference_steps": 0, "seed": -5, "sample_solver": "magic"}, tmp_path)
    assert "num_inference_steps" in message and "seed" in message and "sample_solver" in message


def test_missing_model_type_says_what_to_give(tmp_path: Path) -> None:
    assert "model_type: is required" in _problems({"prompt": "x"}, tmp_path)


def test_a_settings_list_item_must_be_an_object(tmp_path: Path) -> None:
    assert "must be a JSON object" in _problems(["not", "an", "object"], tmp_path)


def test_image_to_video_needs_its_start_image(tmp_path: Path) -> None:
    message = _problems({"model_type": "i2v", "resolution": "832x480", "video_length": 81}, tmp_path)
    assert "image_start" in message
    missing = _problems(
        {"model_type": "i2v", "resolution": "832x480", "video_length": 81, "image_start": "nope.png"},
        tmp_path,
    )
    assert "image_start: file 'nope.png' not found" in missing


def test_a_resolution_of_thousands_of_digits_is_refused_naming_the_key(tmp_path: Path) -> None:
    message = _problems(WAN | {"resolution": "9" * 4301 + "x64"}, tmp_path)
    assert 'resolution: must be "WIDTHxHEIGHT" with 1 to 5 ASCII digits a side' in message


@pytest.mark.parametrize("resolution", ["\uff16\uff14x64", "64x\u0664\u0664", "123456x64", "64x", "x64"])
def test_a_resolution_side_must_be_1_to_5_ascii_digits(tmp_path: Path, resolution: str) -> None:
    assert "resolution: must be" in _problems(WAN | {"resolution": resolution}, tmp_path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("video_length", "9"),
        ("num_inference_steps", "4"),
        ("seed", "7"),
        ("batch_size", True),
        ("guidance_scale", "5.0"),
        ("flow_shift", "3"),
        ("film_grain_intensity", False),
    ],
)
def test_a_number_written_as_text_or_a_boolean_is_refused(tmp_path: Path, key: str, value: object) -> None:
    message = _problems(WAN | {key: value}, tmp_path)
    assert f"{key}: must be a number, not {type(value).__name__}" in message


def test_wangps_own_numbers_are_accepted(tmp_path: Path) -> None:
    # As in WanGP's defaults: ints for counts, ints or floats for scales (ti2v_2_2.json, t2v.json).
    settings = parse_settings(
        WAN | {"guidance_scale": 5, "flow_shift": 5, "num_inference_steps": 4, "seed": 42}
    )
    request = resolve(settings, tmp_path).generations[0].request
    assert (request.guidance_scale, request.flow_shift, request.steps, request.seed) == (5.0, 5.0, 4, 42)


@pytest.mark.parametrize("key", ["prompt", "negative_prompt"])
def test_a_prompt_longer_than_the_cap_is_refused_naming_the_key_and_limit(tmp_path: Path, key: str) -> None:
    resolve(parse_settings(WAN | {key: "a" * MAX_PROMPT_CHARS}), tmp_path)
    message = _problems(WAN | {key: "a" * (MAX_PROMPT_CHARS + 1)}, tmp_path)
    assert f"{key}: String should have at most {MAX_PROMPT_CHARS} characters" in message


def test_lora_multipliers_are_capped(tmp_path: Path) -> None:
    assert "loras_multipliers: String should have at most" in _problems(
        WAN | {"loras_multipliers": "1.0 " * 10_000}, tmp_path
    )


# --- which files a settings object may name ----------------------------------------------------------

TI2V = {"model_type": "wan2.2-ti2v-5b", "prompt": "a lighthouse"}
I2V = {"model_type": "i2v", "prompt": "a lighthouse"}  # takes a start image


def _image_problems(image_start: str, attachments: Attachments) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(parse_settings(I2V | {"image_start": image_start}), attachments)
    return str(caught.value)


def test_settings_sent_without_files_may_name_none_and_nothing_is_looked_up(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(b"png")
    refused = Attachments.refused()
    answers = {
        _image_problems(name, refused) for name in (str(tmp_path / "start.png"), "/nonexistent/x", "a.png")
    }
    assert answers == {f"image_start: {SEND_ATTACHMENTS}"}


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.png", "sub/../../outside.png"])
def test_files_sent_with_the_settings_are_confined_to_their_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.png").write_bytes(b"png")
    (tmp_path / "files" / "sub").mkdir(parents=True)
    assert "is outside the folder" in _image_problems(name, Attachments.inside(tmp_path / "files"))


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(b"png")
    (tmp_path / "files").mkdir()
    os.symlink(tmp_path / "outside.png", tmp_path / "files" / "start.png")
    assert "leads outside the folder" in _image_problems("start.png", Attachments.inside(tmp_path / "files"))


def test_a_file_inside_the_folder_is_found_by_name_or_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(b"png")
    for name in ("start.png", str(tmp_path / "start.png")):
        job = resolve(parse_settings(I2V | {"image_start": name}), Attachments.inside(tmp_path))
        assert job.generations[0].request.image_start == (tmp_path / "start.png").resolve()


def test_a_local_render_reads_any_path_of_the_users_machine(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(b"png")
    (tmp_path / "settings").mkdir()
    local = Attachments.local(tmp_path / "settings")
    for name in (str(tmp_path / "start.png"), "../start.png"):
        job = resolve(parse_settings(I2V | {"image_start": name}), local)
        assert job.generations[0].request.image_start is not None
        assert job.generations[0].request.image_start.read_bytes() == b"png"


def test_loras_travel_to_the_request_with_their_schedule_and_into_the_metadata(tmp_path: Path) -> None:
    settings = WAN | {
        "num_inference_steps": 4,
        "activated_loras": ["style.safetensors", "speed.safetensors"],
        "loras_multipliers": "0.8 1,0",
    }
    (generation,) = resolve(parse_settings(settings), tmp_path).generations
    style, speed = generation.request.loras
    assert (style.name, speed.name) == ("style.safetensors", "speed.safetensors")
    assert [style.weight_at(step) for step in range(4)] == [0.8] * 4
    assert [speed.weight_at(step) for step in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert generation.metadata["activated_loras"] == settings["activated_loras"]
    assert generation.metadata["loras_multipliers"] == "0.8 1,0"


@pytest.mark.parametrize(
    ("multipliers", "named"),
    [("1 1 1", "loras_multipliers"), ("x", "'x' is not a number"), ("1;0", "phase")],
)
def test_a_lora_schedule_that_cannot_be_honoured_is_refused_by_name(
    tmp_path: Path, multipliers: str, named: str
) -> None:
    settings = WAN | {"activated_loras": ["style.safetensors"], "loras_multipliers": multipliers}
    assert named in _problems(settings, tmp_path)


@pytest.mark.parametrize(
    ("text", "profile"),
    [("1", Profile.P1), ("3.5", Profile.P3_PLUS), ("4+", Profile.P4_PLUS), (5, Profile.P5)],
)
def test_memory_profiles_parse_wangp_spellings(text: str | int, profile: Profile) -> None:
    assert Profile.parse(text) is profile


def test_unknown_profile_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: 1, 2, 3, 3\\+, 4, 4\\+, 5"):
        Profile.parse("6")


# --- keys read as WanGP reads them (models.wangp_keys) -------------------------------------------------


def _job(data: dict[str, object], tmp_path: Path) -> Job:
    return resolve(parse_settings(data), tmp_path)


def test_flux_dev_takes_its_guidance_from_embedded_guidance_scale(tmp_path: Path) -> None:
    # WanGP's export of flux holds guidance_scale 5 (its unused default) beside the real guidance.
    job = _job({"model_type": "flux", "guidance_scale": 5, "embedded_guidance_scale": 3.5}, tmp_path)
    assert job.generations[0].request.guidance_scale == 3.5
    assert job.warnings == []
    metadata = job.generations[0].metadata
    assert metadata["embedded_guidance_scale"] == 3.5 and "guidance_scale" not in metadata


def test_a_key_the_model_does_not_read_is_not_used_and_says_so(tmp_path: Path) -> None:
    job = _job({"model_type": "flux", "guidance_scale": 3.0}, tmp_path)
    assert job.generations[0].request.guidance_scale == 2.5  # the model's own, as in WanGP
    assert job.warnings == [
        "guidance_scale: 3.0 is not used: WanGP reads no guidance_scale for flux; its guidance is "
        "embedded_guidance_scale"
    ]
    ltx = _job({"model_type": "ltxv_13B", "flow_shift": 9}, tmp_path)
    assert ltx.generations[0].request.flow_shift is None
    assert ltx.warnings == ["flow_shift: 9.0 is not used: WanGP reads no flow_shift for ltxv_13B"]


def test_wangp_renders_one_video_a_call_while_wanfarms_own_models_batch(tmp_path: Path) -> None:
    job = _job({"model_type": "t2v_1.3B", "batch_size": 2}, tmp_path)
    assert job.work.batch == 1 and job.generations[0].request.batch_size == 1
    assert job.warnings == [
        "batch_size: 2 is not used: WanGP renders one video a call; repeat_generation renders more"
    ]
    assert _job(WAN | {"batch_size": 2}, tmp_path).work.batch == 2


@pytest.mark.parametrize(
    ("model_type", "given", "used"),
    [("qwen_image_20B", "default", "euler"), ("flux", "", "euler"), ("t2v", "dpm++", "dpm++")],
)
def test_samplers_read_as_wangp_writes_them(tmp_path: Path, model_type: str, given: str, used: str) -> None:
    job = _job({"model_type": model_type, "sample_solver": given}, tmp_path)
    assert job.generations[0].request.sample_solver == used


def test_a_wangp_sampler_wanfarm_does_not_run_is_refused_by_name(tmp_path: Path) -> None:
    message = _problems({"model_type": "qwen_image_20B", "sample_solver": "lightning"}, tmp_path)
    assert "sample_solver: 'lightning' is not supported by WanFarm yet" in message


@pytest.mark.parametrize(("value", "what"), [("SE", "an end image"), ("TV", "continuing a source video")])
def test_image_inputs_wanfarm_does_not_render_are_refused(tmp_path: Path, value: str, what: str) -> None:
    message = _problems(TI2V | {"image_prompt_type": value}, tmp_path)
    assert f"image_prompt_type: {value!r} is not supported by WanFarm yet: {what}" in message


def test_several_start_images_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "b.png").write_bytes(b"png")
    message = _problems(I2V | {"image_start": ["a.png", "b.png"]}, tmp_path)
    assert "image_start: 2 start images are not supported by WanFarm yet" in message


def test_ti2v_takes_a_start_image_and_refuses_s_without_one(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(b"png")
    from_image: dict[str, object] = {**TI2V, "image_start": "start.png", "image_prompt_type": "S"}
    job = _job(from_image, tmp_path)
    assert job.generations[0].request.image_start == (tmp_path / "start.png").resolve()
    message = _problems(TI2V | {"image_prompt_type": "S"}, tmp_path)
    assert "image_start: image_prompt_type 'S' asks for a start image; give image_start" in message
    text_only: dict[str, object] = {**TI2V, "image_prompt_type": "T"}
    assert _job(text_only, tmp_path).generations[0].request.image_start is None


def test_a_long_wan_video_is_refused_where_wangp_turns_riflex_on(tmp_path: Path) -> None:
    # RIFLEx_setting 0 (auto, WanGP's default) switches RIFLEx on past 6 s at 16 fps: 97 frames.
    message = _problems({"model_type": "t2v", "video_length": 101}, tmp_path)
    assert "RIFLEx_setting: 0 (WanGP's default for t2v) is not supported by WanFarm yet" in message
    job = _job({"model_type": "t2v", "video_length": 101, "RIFLEx_setting": 2}, tmp_path)
    assert job.work.frames == 101 and job.warnings == []


def test_a_video_longer_than_the_sliding_window_is_refused_on_a_model_that_cannot_continue(
    tmp_path: Path,
) -> None:
    long = {"model_type": "t2v", "video_length": 161, "RIFLEx_setting": 2}
    message = _problems(long, tmp_path)
    assert "sliding_window_size: 161 frames in windows of 129 are 2 sliding windows" in message
    assert "give video_length at most 129" in message
    assert _job(long | {"sliding_window_size": 161}, tmp_path).work.frames == 161


def test_a_missing_key_reads_wangps_default_for_the_model(tmp_path: Path) -> None:
    # t2v_2_2's own default guidance2_scale is 3 (phase 2, the low-noise expert).
    request = _job({"model_type": "t2v_2_2", "guidance_scale": 5}, tmp_path).generations[0].request
    assert (request.guidance_scale, request.guidance_scale_2) == (5.0, 3.0)
    assert "guidance3_scale: 5 (WanGP's default for t2v_2_2)" in _problems(
        {"model_type": "t2v_2_2", "guidance_phases": 3, "switch_threshold2": 500}, tmp_path
    )


def test_wan22_switches_experts_where_the_settings_say(tmp_path: Path) -> None:
    request = _job({"model_type": "t2v_2_2", "switch_threshold": 500}, tmp_path).generations[0].request
    assert (request.switch_threshold, request.guidance_scale_2) == (500.0, 3.0)
    assert _job({"model_type": "t2v_2_2"}, tmp_path).generations[0].request.switch_threshold == 875.0


def test_a_refused_gate_does_not_drag_its_defaults_along(tmp_path: Path) -> None:
    message = _problems(WAN | {"NAG_scale": 2}, tmp_path)
    assert "NAG_scale: 2 is not supported by WanFarm yet" in message
    assert "NAG_tau" not in message and "NAG_alpha" not in message


def test_metadata_drops_what_wangp_reads_the_same_when_absent(tmp_path: Path) -> None:
    job = _job(
        {"model_type": "t2v_2_2", "guidance2_scale": 4, "guidance_phases": 2, "NAG_scale": 1}, tmp_path
    )
    metadata = job.generations[0].metadata
    assert metadata["guidance2_scale"] == 4  # not WanGP's default for t2v_2_2 (3): kept
    assert "guidance_phases" not in metadata and "NAG_scale" not in metadata
