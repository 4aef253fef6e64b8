"""WanGP's Hunyuan definitions (HunyuanVideo 1.5 t2v/i2v, HunyuanVideo and its I2V) as catalogue
models: each one of defaults/ at deepbeepmeep/Wan2GP 8681e9f7 (the fixture of
tests/unit/test_wangp_definitions.py) passes `wanfarm render --dry-run` with its own default
settings, or is refused naming what is missing. Read from WanGP's models/hyvideo/hunyuan_handler.py
and models/hyvideo/hunyuan.py at that commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from controller.cli import main
from models import catalogue as catalogue_module
from models.catalogue import Task, catalogue, get_model
from models.wangp_definitions import decide, own_weights, parse_definition
from models.wangp_keys import model_facts
from tests.served_definitions import definitions_folder

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
# Served: the four HunyuanVideo 1.5 models of the catalogue (their definitions name the very
# files of the Diffusers repos), the 4-step distilled t2v from its own file over the 720p t2v's
# folder (models.hunyuan15_layout), the step-distilled 480p i2v from its int8 file (listed first:
# WanGP loads it on every profile) over the 720p i2v's, HunyuanVideo's own, and its AccVideo and
# FastVideo finetunes from their int8 files (models.hunyuan_layout, models.quanto_rows), and
# HunyuanVideo I2V (its token_replace release, models/presets/hunyuan-video-i2v-13b.json).
SERVED = {
    "hunyuan",
    "hunyuan_i2v",
    "hunyuan_t2v_accvideo",
    "hunyuan_t2v_fast",
    "hunyuan_1_5_480_i2v_step_distilled",
    "hunyuan_1_5_480_t2v_lightx2v",
    "hunyuan_1_5_t2v",
    "hunyuan_1_5_480_t2v",
    "hunyuan_1_5_i2v",
    "hunyuan_1_5_480_i2v",
}
# Refused, with words the reason must hold.
REFUSED = {
    "hunyuan_1_5_upsampler": "architecture 'hunyuan_1_5_upsampler' is not supported yet",
    "hunyuan_1_5_upsampler_1080": "architecture 'hunyuan_1_5_upsampler' is not supported yet",
    "hunyuan_avatar": "architecture 'hunyuan_avatar' is not supported yet",
    "hunyuan_custom": "architecture 'hunyuan_custom' is not supported yet",
    "hunyuan_custom_audio": "architecture 'hunyuan_custom_audio' is not supported yet",
    "hunyuan_custom_edit": "architecture 'hunyuan_custom_edit' is not supported yet",
}


def definitions() -> dict[str, Any]:
    return {
        model_id: data
        for model_id, data in json.loads(FIXTURE.read_text())["definitions"].items()
        if "hunyuan" in data["model"]["architecture"]
    }


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_each_hunyuan_definition_passes_a_dry_run_with_its_defaults_or_is_refused_by_name(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (64, 64), (230, 40, 30)).save(tmp_path / "start.png")
    data = definitions()
    for model_id, definition in data.items():
        (models_dir / f"{model_id}.json").write_text(json.dumps(definition))
    served, refused = set(), {}
    for verdict in catalogue_module.definitions():
        if verdict.preset is None:
            refused[verdict.id] = verdict.reason
            continue
        settings = {k: v for k, v in data[verdict.id].items() if k != "model"} | {"model_type": verdict.id}
        if verdict.preset.task is Task.I2V:
            settings["image_start"] = "start.png"
        path = tmp_path / f"{verdict.id}.json"
        path.write_text(json.dumps(settings))
        assert main(["render", "--dry-run", str(path)]) == 0, capsys.readouterr().err
        served.add(verdict.id)
    assert served >= SERVED, refused
    for model_id, words in REFUSED.items():
        assert words in refused[model_id]
    assert served | refused.keys() == data.keys()


@pytest.mark.parametrize(
    ("model_type", "preset_id", "shift", "resolution"),
    [
        ("hunyuan_1_5_t2v", "hunyuan-video-1.5-t2v-720p", 9.0, "1280x720"),
        ("hunyuan_1_5_480_t2v", "hunyuan-video-1.5-t2v-480p", 5.0, "832x480"),
        ("hunyuan_1_5_i2v", "hunyuan-video-1.5-i2v-720p", 7.0, "1280x720"),
        ("hunyuan_1_5_480_i2v", "hunyuan-video-1.5-i2v-480p", 5.0, "832x480"),
    ],
)
def test_the_catalogue_models_keep_wangps_defaults(
    model_type: str, preset_id: str, shift: float, resolution: str
) -> None:
    preset = get_model(model_type)
    settings = definitions()[model_type]
    assert preset.id == preset_id and preset.family == "hunyuan15"
    assert (preset.defaults.flow_shift, preset.defaults.resolution) == (shift, resolution)
    assert preset.defaults.flow_shift == settings["flow_shift"]
    assert preset.defaults.guidance_scale == settings["guidance_scale"]
    assert preset.defaults.num_inference_steps == settings["num_inference_steps"]
    assert preset.defaults.video_length == settings["video_length"]
    # One phase of real CFG, no embedded guidance (hunyuan_handler: guidance_max_phases 1).
    facts = model_facts(preset.wangp_model_types)
    assert facts.wangp and facts.guidance_phases == 1 and not facts.embedded_guidance
    assert facts.sliding_window is (preset.task is Task.I2V)
    # The 8.3B transformer in bf16 (16.65 GB), as WanGP's _bf16 file.
    assert preset.component(preset.components[0].role)[0].bytes == 8_326_608_160 * 2


def test_a_longer_video_than_the_definitions_window_is_refused_on_i2v(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WanGP renders hunyuan_1_5_i2v in windows of 97 frames (its definition's sliding_window_size):
    # 121 frames would be two windows, which the farm does not render yet.
    Image.new("RGB", (64, 64), (230, 40, 30)).save(tmp_path / "start.png")
    settings = {
        "model_type": "hunyuan_1_5_i2v",
        "prompt": "a fox",
        "video_length": 121,
        "image_start": "start.png",
    }
    (tmp_path / "job.json").write_text(json.dumps(settings))
    assert main(["render", "--dry-run", str(tmp_path / "job.json")]) == 2
    assert "sliding_window_size" in capsys.readouterr().err
    # The 480p one has WanGP's default window (129 frames): one window.
    settings["model_type"] = "hunyuan_1_5_480_i2v"
    (tmp_path / "job.json").write_text(json.dumps(settings))
    assert main(["render", "--dry-run", str(tmp_path / "job.json")]) == 0, capsys.readouterr().err


def test_the_distilled_t2v_renders_its_own_file_over_the_720p_folder_at_its_own_defaults() -> None:
    definition = definitions()["hunyuan_1_5_480_t2v_lightx2v"]
    preset = decide(parse_definition("hunyuan_1_5_480_t2v_lightx2v", definition), catalogue()).preset
    assert preset is not None and preset.derived_from == "hunyuan-video-1.5-t2v-720p"
    assert own_weights(preset)[0].endswith("hy1.5_t2v_480p_lightx2v_4step_bf16.safetensors")
    defaults = preset.defaults
    assert (defaults.num_inference_steps, defaults.guidance_scale, defaults.flow_shift) == (4, 1.0, 8.0)
    assert defaults.resolution == "832x480"


@pytest.mark.parametrize(
    ("model_id", "file", "steps", "shift"),
    [
        ("hunyuan_t2v_accvideo", "accvideo_hunyuan_video_720_quanto_int8.safetensors", 5, 7.0),
        ("hunyuan_t2v_fast", "fast_hunyuan_video_720_quanto_int8.safetensors", 6, 17.0),
    ],
)
def test_the_hunyuan_finetunes_render_their_int8_file_at_their_own_defaults(
    model_id: str, file: str, steps: int, shift: float
) -> None:
    preset = decide(parse_definition(model_id, definitions()[model_id]), catalogue()).preset
    assert preset is not None and preset.derived_from == "hunyuan-video-t2v-13b"
    assert [url.rsplit("/", 1)[-1] for url in own_weights(preset)] == [file]
    defaults = preset.defaults
    assert (defaults.num_inference_steps, defaults.flow_shift, defaults.guidance_scale) == (steps, shift, 6.0)
    assert (defaults.resolution, defaults.video_length) == ("832x480", 81)


def test_the_step_distilled_i2v_renders_its_int8_file_listed_first_at_its_own_defaults() -> None:
    model_id = "hunyuan_1_5_480_i2v_step_distilled"
    preset = decide(parse_definition(model_id, definitions()[model_id]), catalogue()).preset
    assert preset is not None and preset.derived_from == "hunyuan-video-1.5-i2v-720p"
    assert own_weights(preset)[0].endswith("step_distilled_quanto_bf16_int8.safetensors")
    defaults = preset.defaults
    assert (defaults.num_inference_steps, defaults.guidance_scale, defaults.flow_shift) == (8, 1.0, 5.0)
    assert (defaults.resolution, defaults.video_length) == ("832x480", 97)


def test_hunyuan_i2v_keeps_wangps_defaults_and_reads_a_start_image() -> None:
    # models/hyvideo/hunyuan_handler.py: 24 fps, frames 4n+1 from 5, flow shift 5, embedded guidance 6
    # (guidance_scale 7 is not read: no guidance phase), a start image and no end image.
    preset = get_model("hunyuan_i2v")
    assert preset.id == "hunyuan-video-i2v-13b" and preset.pipeline == "HunyuanVideoImageToVideoPipeline"
    assert preset.task is Task.I2V and preset.fps == 24 and not preset.end_image
    assert preset.frames is not None and (preset.frames.step, preset.frames.offset, preset.frames.min) == (
        4,
        1,
        5,
    )
    defaults = preset.defaults
    assert (defaults.flow_shift, defaults.guidance_scale, defaults.num_inference_steps) == (5.0, 6.0, 30)
    facts = model_facts(preset.wangp_model_types)
    assert facts.embedded_guidance and facts.guidance_phases == 0 and not facts.end_image
