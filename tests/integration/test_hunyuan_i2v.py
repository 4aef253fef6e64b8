"""HunyuanVideo I2V (WanGP's hunyuan_i2v, deepbeepmeep/Wan2GP 8681e9f7 models/hyvideo/hunyuan.py:
'HYVideo-T/2', token_replace, image embeddings every 4th, embedded guidance) in tiny: the
hunyuan-i2v-tiny preset (models.tiny_hunyuan_i2v) renders through `wanfarm render` from a start
image, the image conditions the video, and a WanGP definition naming a transformer file in the
original layout renders the folder's frames from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from models.catalogue import catalogue, get_model
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.tiny import build_tiny
from models.tiny_hunyuan_i2v import write_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import served_file
from tests.torch_threads import one_torch_thread

TINY = get_model("hunyuan-i2v-tiny")
FILE = "hunyuan_i2v_tiny_finetune_bf16.safetensors"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    Image.new("RGB", (64, 32), (220, 40, 30)).save(folder / "red.png")
    Image.new("RGB", (64, 32), (20, 60, 230)).save(folder / "blue.png")
    return folder / "red.png", folder / "blue.png"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PipelineHost:
    return PipelineHost(WeightCache(tmp_path_factory.mktemp("weights")))


def request(image: Path) -> GenerationRequest:
    return GenerationRequest(
        "a red fox in the snow", "", 64, 32, 5, 2, 6.0, 5.0, "euler", 7, image_start=image
    )


def test_the_tiny_i2v_renders_an_mp4_from_its_start_image(
    tmp_path: Path, cache_dir: Path, images: tuple[Path, Path]
) -> None:
    red, _ = images
    settings = {"model_type": TINY.id, "prompt": "a fox", "image_start": str(red), "seed": 3}
    job = tmp_path / "job.json"
    job.write_text(json.dumps(settings | {"resolution": "64x32"}))
    assert main(["render", str(job), "--out", str(tmp_path / "out"), "--cache", str(cache_dir)]) == 0
    [video] = list((tmp_path / "out").glob("*.mp4"))
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, float(decoded.fps)) == (5, 64, 32, 24.0)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == TINY.id and metadata["seed"] == 3
    assert metadata["image_start"] == str(red)


def test_a_settings_file_without_a_start_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "job.json").write_text(json.dumps({"model_type": TINY.id, "prompt": "a fox"}))
    assert main(["render", "--dry-run", str(tmp_path / "job.json")]) != 0
    assert "image" in capsys.readouterr().err


def test_the_start_image_conditions_the_video(host: PipelineHost, images: tuple[Path, Path]) -> None:
    red, blue = images
    first = host.generate(TINY, request(red)).frames
    again = host.generate(TINY, request(red)).frames
    other = host.generate(TINY, request(blue)).frames
    assert first.shape == (1, 5, 32, 64, 3)  # one video of 5 frames
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


def test_a_definition_with_its_own_file_renders_the_frames_of_the_same_weights(
    tmp_path: Path, host: PipelineHost, images: tuple[Path, Path]
) -> None:
    red, _ = images
    with served_file(FILE, write_single_file(tmp_path / FILE).read_bytes()) as url:
        definition = {"model": {"architecture": TINY.id, "URLs": [url]}}
        verdict = decide(parse_definition("hunyuan_i2v_tiny_finetune", definition), catalogue())
        assert verdict.preset is not None, verdict.reason
        assert own_weights(verdict.preset) == (url,)
        from_file = host.generate(verdict.preset, request(red))
    assert from_file.info.model_file == FILE
    from_folder = host.generate(TINY, request(red))
    assert np.array_equal(from_file.frames, from_folder.frames)


def test_the_presets_component_bytes_are_the_built_folders(tmp_path: Path) -> None:
    build_tiny(TINY, tmp_path / "folder")
    for component in TINY.components:
        files = (tmp_path / "folder" / component.name).glob("*.safetensors")
        assert component.bytes == sum(path.stat().st_size for path in files), component.name
