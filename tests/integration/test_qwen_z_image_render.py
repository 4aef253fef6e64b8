"""Qwen-Image-Edit and Z-Image through `wanfarm render`: the tiny Z-Image renders a PNG with its
settings in the metadata, and the tiny Qwen-Image-Edit renders from its input images (image_refs)
at the first one's aspect ratio, as WanGP's qwen_main.py sizes an edit (Wan2GP 8681e9f7), the
images named in the output's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from controller.cli import main
from processing.image import read_png
from processing.metadata import read_metadata


def render(job: Path, out: Path, cache: Path) -> int:
    return main(["render", str(job), "--out", str(out), "--cache", str(cache)])


def test_the_tiny_z_image_renders_a_png_with_its_settings(tmp_path: Path, cache_dir: Path) -> None:
    job = tmp_path / "z.json"
    job.write_text(
        json.dumps({"model_type": "z-image-tiny", "prompt": "a fox", "resolution": "64x48", "seed": 4})
    )
    assert render(job, tmp_path / "out", cache_dir) == 0
    [image] = list((tmp_path / "out").glob("*.png"))
    assert read_png(image).shape == (48, 64, 3)
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == "z-image-tiny" and metadata["seed"] == 4
    assert metadata["num_inference_steps"] == 4 and metadata["guidance_scale"] == 0.0


def test_the_tiny_qwen_edit_renders_from_its_input_images(tmp_path: Path, cache_dir: Path) -> None:
    # A 2:1 main image on a 64x64 canvas: 90.5 x 45.3 at the canvas's pixels, sides rounded to 32.
    Image.new("RGB", (128, 64), (200, 30, 30)).save(tmp_path / "subject.png")
    Image.new("RGB", (30, 60), (30, 200, 30)).save(tmp_path / "hat.png")
    settings = {
        "model_type": "qwen-image-edit-tiny",
        "prompt": "add a hat",
        "resolution": "64x64",
        "num_inference_steps": 2,
        "seed": 3,
        "image_refs": ["subject.png", "hat.png"],
    }
    job = tmp_path / "edit.json"
    job.write_text(json.dumps(settings))
    assert render(job, tmp_path / "out", cache_dir) == 0
    [image] = list((tmp_path / "out").glob("*.png"))
    pixels = read_png(image)
    assert pixels.shape == (32, 96, 3) and np.asarray(pixels).std() > 0
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == "qwen-image-edit-tiny"
    assert metadata["image_refs"] == ["subject.png", "hat.png"] and metadata["seed"] == 3
