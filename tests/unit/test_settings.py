"""WanGP settings: defaults, seeds, unknown keys, and errors that name the key and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.profiles import Profile
from models.settings import MAX_SEED, SettingsError, parse_settings, resolve

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
    job = resolve(parse_settings(WAN | {"skip_steps_cache_type": "tea", "generation_time": 3}), tmp_path)
    assert job.generations[0].metadata["skip_steps_cache_type"] == "tea"
    assert job.warnings == ["unknown key kept but not used: skip_steps_cache_type"]


def test_unknown_model_names_the_key_and_the_choices(tmp_path: Path) -> None:
    message = _problems(WAN | {"model_type": "sora"}, tmp_path)
    assert "model_type" in message and "unknown model 'sora'" in message and "wan-tiny" in message


def test_frames_must_be_4k_plus_1_for_wan(tmp_path: Path) -> None:
    message = _problems(WAN | {"video_length": 8}, tmp_path)
    assert "video_length: 8 is not allowed" in message and "4k+1" in message


def test_sides_must_be_multiples_of_16(tmp_path: Path) -> None:
    message = _problems(WAN | {"resolution": "65x64"}, tmp_path)
    assert "resolution: 65x64" in message and "multiples of 16" in message


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


def test_loras_are_refused_until_supported(tmp_path: Path) -> None:
    assert "activated_loras" in _problems(WAN | {"activated_loras": ["style.safetensors"]}, tmp_path)


@pytest.mark.parametrize(
    ("text", "profile"),
    [("1", Profile.P1), ("3.5", Profile.P3_PLUS), ("4+", Profile.P4_PLUS), (5, Profile.P5)],
)
def test_memory_profiles_parse_wangp_spellings(text: str | int, profile: Profile) -> None:
    assert Profile.parse(text) is profile


def test_unknown_profile_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: 1, 2, 3, 3\\+, 4, 4\\+, 5"):
        Profile.parse("6")
