"""End frames and start images as WanGP users give them: image_end on the first-last-frame models,
TI2V from a start image, refusals that name the key, and outputs whose metadata says what was used.

WanGP's rules read at deepbeepmeep/Wan2GP 8681e9f7: models/wan/wan_handler.py (image_prompt_types
"SEVL" on image-to-video models, "TSVL" on ti2v_2_2), wgp.py validate_settings (an 'E' needs an end
image), shared/api.py apply_media_flag_defaults (a given image_end adds 'E').
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from models.catalogue import get_model
from models.runner import PipelineHost
from models.settings import Job, SettingsError, parse_settings, resolve
from models.tiny import build_tiny, component_bytes
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.unit.test_wangp_keys import farm_url, post, wangp_export  # noqa: F401  (a fixture)

TINY = ("wan-flf2v-tiny", "wan-ti2v-tiny")
# Small enough to render in about a second each on a busy 2-core machine.
SMALL = {"resolution": "32x32", "video_length": 5, "num_inference_steps": 2, "seed": 3}
FLF2V = {"model_type": "wan-flf2v-tiny", "prompt": "a fox"} | SMALL
TI2V = {"model_type": "wan-ti2v-tiny", "prompt": "a lighthouse"} | SMALL


def images(folder: Path) -> Path:
    """A red start image and a blue end image in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (230, 40, 30)).save(folder / "start.png")
    Image.new("RGB", (64, 64), (20, 60, 220)).save(folder / "end.png")
    return folder


def job(settings: dict[str, Any], folder: Path) -> Job:
    return resolve(parse_settings(settings), folder)


def problems(settings: dict[str, Any], folder: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        job(settings, folder)
    return "; ".join(caught.value.problems)


# --- the tiny models -------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", TINY)
def test_tiny_image_models_build_identically_and_weigh_what_their_presets_say(
    model_id: str, tmp_path: Path
) -> None:
    preset = get_model(model_id)
    build_tiny(preset, tmp_path / "a")
    build_tiny(preset, tmp_path / "b")
    on_disk = component_bytes(tmp_path / "a")
    assert {c.name: c.bytes for c in preset.components} == {
        c.name: on_disk[c.name] for c in preset.components
    }
    weights = sorted((tmp_path / "a").rglob("*.safetensors"))
    assert weights
    assert all(
        w.read_bytes() == (tmp_path / "b" / w.relative_to(tmp_path / "a")).read_bytes() for w in weights
    )


# --- settings: what is taken, what is refused --------------------------------------------------------


@pytest.mark.parametrize("model_type", ["flf2v_720p", "i2v_2_2"])
def test_wangps_end_image_models_take_image_end_and_record_it(model_type: str, tmp_path: Path) -> None:
    images(tmp_path)
    settings = wangp_export(model_type) | {"image_start": "start.png", "image_end": ["end.png"]}
    (generation,) = job(settings, tmp_path).generations
    assert generation.request.image_end == (tmp_path / "end.png").resolve()
    assert generation.metadata["image_end"] == ["end.png"]  # as written: WanGP's list of one
    assert generation.metadata["image_prompt_type"] == "SE"


def test_the_flf2v_preset_is_wangps_first_last_frame_model() -> None:
    preset = get_model("flf2v_720p")
    assert (preset.id, preset.pipeline, preset.end_image) == (
        "wan2.1-flf2v-14b-720p",
        "WanImageToVideoPipeline",
        True,
    )
    assert preset.defaults.resolution == "1280x720" and preset.defaults.flow_shift == 5.0
    params = {c.name: c.params for c in preset.components}
    assert 16.39e9 < params["transformer"] < 16.40e9 and 0.63e9 < params["image_encoder"] < 0.64e9


@pytest.mark.parametrize(
    ("model_type", "why"),
    [
        ("t2v", "wan2.1-t2v-14b is t2v and takes no end image"),
        ("ti2v_2_2", "wan2.2-ti2v-5b is ti2v and takes no end image"),
        ("i2v", "an end image on wan2.1-i2v-14b-480p is not supported by WanFarm yet: WanGP renders it"),
    ],
)
def test_image_end_on_a_model_that_cannot_take_it_is_refused_naming_key_model_and_why(
    model_type: str, why: str, tmp_path: Path
) -> None:
    images(tmp_path)
    settings = wangp_export(model_type) | {"image_start": "start.png", "image_end": "end.png"}
    message = problems(settings, tmp_path)
    assert f"image_end: {why}" in message
    assert "wan2.1-flf2v-14b-720p (flf2v_720p), wan2.2-i2v-a14b (i2v_2_2)" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"image_prompt_type": "SE"},
            "image_end: image_prompt_type 'SE' asks for an end image; give image_end",
        ),
        ({"image_end": ["end.png", "end.png"]}, "image_end: 2 end images are not supported by WanFarm yet"),
        ({"image_prompt_type": "SV"}, "image_prompt_type: 'SV' is not supported by WanFarm yet"),
        ({"image_end": "missing.png"}, "image_end: file 'missing.png' not found"),
    ],
)
def test_end_image_mistakes_are_refused_by_name(change: dict[str, Any], named: str, tmp_path: Path) -> None:
    images(tmp_path)
    assert named in problems(wangp_export("flf2v_720p") | {"image_start": "start.png"} | change, tmp_path)


def test_a_dry_run_refusing_image_end_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path)
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"model_type": "t2v", "image_end": "end.png"}))
    assert main(["render", "--dry-run", str(path)]) == 2
    assert "image_end: wan2.1-t2v-14b is t2v and takes no end image" in capsys.readouterr().err


def test_rest_refuses_image_end_on_a_text_model_with_422(farm_url: str) -> None:  # noqa: F811
    settings = wangp_export("t2v") | {"image_end": "end.png"}
    status, body = post(farm_url, {"settings": settings, "wait_for_capacity": True})
    assert status == 422, body
    assert any(line.startswith("settings: image_end: ") for line in body["detail"])


# --- rendering on the tiny models --------------------------------------------------------------------


def render(cache_dir: Path, folder: Path, settings: dict[str, Any]) -> Path:
    path = folder / "job.json"
    path.write_text(json.dumps(settings))
    out = folder / "out"
    assert main(["render", str(path), "--out", str(out), "--cache", str(cache_dir)]) == 0
    [video] = out.glob("*.mp4")
    return video


def test_a_start_and_end_image_render_and_differ_from_the_start_alone(
    tmp_path: Path, cache_dir: Path
) -> None:
    both = render(
        cache_dir, images(tmp_path / "both"), FLF2V | {"image_start": "start.png", "image_end": "end.png"}
    )
    start_only = render(cache_dir, images(tmp_path / "start"), FLF2V | {"image_start": "start.png"})
    metadata = read_metadata(both)
    assert metadata is not None
    assert (metadata["image_start"], metadata["image_end"], metadata["image_prompt_type"]) == (
        "start.png",
        "end.png",
        "SE",
    )
    assert "image_end" not in (read_metadata(start_only) or {})
    assert read_mp4(both).frame_count == 5
    assert not np.array_equal(read_mp4(both).frames, read_mp4(start_only).frames)


def test_ti2v_renders_from_a_start_image_through_wanfarm_render(tmp_path: Path, cache_dir: Path) -> None:
    video = render(cache_dir, images(tmp_path), TI2V | {"image_start": "start.png"})
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 32, 32)
    metadata = read_metadata(video)
    assert metadata is not None
    assert (metadata["image_start"], metadata["image_prompt_type"]) == ("start.png", "S")


def test_ti2v_pins_its_first_frame_to_the_start_image_without_reloading(
    tmp_path: Path, weight_cache: WeightCache
) -> None:
    # The tiny VAE has random weights: what the image becomes is its reconstruction of the image,
    # and the first frame is exactly that, whatever the seed; text-only first frames are not.
    images(tmp_path)
    preset = get_model("wan-ti2v-tiny")
    host = PipelineHost(weight_cache)
    (text,) = [g.request for g in job(TI2V, tmp_path).generations]
    (from_image,) = [g.request for g in job(TI2V | {"image_start": "start.png"}, tmp_path).generations]
    first = host.generate(preset, text).frames
    image_a = host.generate(preset, from_image).frames
    image_b = host.generate(preset, replace(from_image, seed=4, prompt="a storm")).frames
    again = host.generate(preset, text).frames
    other_seed = host.generate(preset, replace(text, seed=4)).frames
    assert host.loads == 1  # the image call was made over the hot pipeline's modules
    assert np.array_equal(first, again)  # and left the hot pipeline as it was
    assert np.array_equal(image_a[0, 0], image_b[0, 0]) and not np.array_equal(image_a, image_b)
    assert not np.array_equal(first[0, 0], other_seed[0, 0])
    pinned = image_a[0, 0].astype(float)
    assert np.abs(first[0, 0] - pinned).mean() > 0 and np.abs(other_seed[0, 0] - pinned).mean() > 0
