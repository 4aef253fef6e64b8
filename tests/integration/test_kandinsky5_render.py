"""Kandinsky 5 through `wanfarm render`: the tiny text-to-video and image-to-video models give mp4s
at 24 fps with WanGP metadata that reads back, and a WanGP definition with a transformer file of its
own in the original layout (fetched over loopback HTTP) renders those weights."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from controller.cli import main
from models.tiny_kandinsky5 import k5_transformer, write_k5_single_file
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import definitions_folder, served_file
from tests.torch_threads import one_torch_thread

FILE = "kandinsky5_tiny_distilled_bf16.safetensors"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def render(tmp_path: Path, cache: Path, name: str, settings: dict[str, object]) -> Path:
    job = tmp_path / f"{name}.json"
    job.write_text(json.dumps(settings))
    out = tmp_path / f"out-{name}"
    assert main(["render", str(job), "--out", str(out), "--cache", str(cache)]) == 0
    [video] = list(out.glob("*.mp4"))
    return video


def test_the_tiny_models_render_mp4s_with_their_settings(tmp_path: Path, cache_dir: Path) -> None:
    Image.new("RGB", (48, 32), (230, 40, 30)).save(tmp_path / "start.png")  # the canvas's shape
    # Each model's frame count and its own settings; image-to-video takes at least 17 frames.
    jobs: dict[str, tuple[int, dict[str, object]]] = {
        "k5-tiny": (5, {}),
        "k5-i2v-tiny": (17, {"image_start": "start.png", "image_prompt_type": "S"}),
    }
    for model, (frames, extra) in jobs.items():
        settings = {
            "model_type": model,
            "prompt": "a fox",
            "resolution": "48x32",
            "seed": 5,
            "video_length": frames,
        }
        video = render(tmp_path, cache_dir, model, settings | extra)
        decoded = read_mp4(video)
        assert (decoded.frame_count, decoded.width, decoded.height) == (frames, 48, 32)
        assert float(decoded.fps) == 24
        metadata = read_metadata(video)
        assert metadata is not None and metadata["model_type"] == model and metadata["seed"] == 5
        assert metadata["video_length"] == frames and metadata["flow_shift"] == 10.0


def test_a_shorter_i2v_clip_is_refused(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (32, 32), (230, 40, 30)).save(tmp_path / "start.png")
    settings = {"model_type": "k5-i2v-tiny", "prompt": "a fox", "video_length": 9, "image_start": "start.png"}
    (tmp_path / "job.json").write_text(json.dumps(settings))
    assert main(["render", str(tmp_path / "job.json"), "--out", str(tmp_path / "out")]) == 2
    assert "video_length" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_a_definition_renders_its_own_file_in_the_original_layout(models_dir: Path, tmp_path: Path) -> None:
    moved = k5_transformer()
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    body = write_k5_single_file(tmp_path / FILE, moved).read_bytes()
    with served_file(FILE, body) as url:
        # As WanGP's distilled Lite definitions: their own file, 16 steps without guidance, an inert override.
        definition = {
            "model": {
                "architecture": "k5-tiny",
                "URLs": [url],
                "k5_config_overrides": {"metrics": {"scheduler_scale": 5}},
            },
            "num_inference_steps": 3,
            "guidance_scale": 1.0,
        }
        (models_dir / "k5_tiny_distil.json").write_text(json.dumps(definition))
        cache = tmp_path / "cache"
        videos = {
            model: render(tmp_path, cache, model, {"model_type": model, "prompt": "a fox", "seed": 5})
            for model in ("k5_tiny_distil", "k5-tiny")
        }
    metadata = read_metadata(videos["k5_tiny_distil"])
    assert metadata is not None and metadata["model_filename"] == FILE
    assert metadata["num_inference_steps"] == 3 and metadata["guidance_scale"] == 1.0
    assert not np.array_equal(read_mp4(videos["k5_tiny_distil"]).frames, read_mp4(videos["k5-tiny"]).frames)
    assert (cache / "k5_tiny_distil" / FILE).read_bytes() == body
