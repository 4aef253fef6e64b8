"""FLUX.1 Kontext and FLUX.2 from WanGP settings: reference images (image_refs, video_prompt_type
"KI") sized and stitched as WanGP's Flux handler does (models/flux/flux_handler.py, flux_main.py
and wgp.py resize_and_remove_background at Wan2GP 8681e9f7), the tiny Kontext rendered through
`wanfarm render` with its images named in the output's metadata, and the settings WanFarm cannot
render as WanGP would refused by key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from models.flux_refs import reference_images, stitched
from models.request import GenerationRequest
from processing.metadata import read_metadata


def request_with(refs: tuple[Path, ...], width: int = 64, height: int = 48) -> GenerationRequest:
    return GenerationRequest(
        prompt="add a hat",
        negative_prompt="",
        width=width,
        height=height,
        frames=1,
        steps=2,
        guidance_scale=2.5,
        flow_shift=None,
        sample_solver="euler",
        seed=1,
        image_refs=refs,
    )


@pytest.fixture
def refs(tmp_path: Path) -> tuple[Path, Path]:
    Image.new("RGB", (80, 40), (200, 30, 30)).save(tmp_path / "subject.png")
    Image.new("RGB", (30, 60), (30, 200, 30)).save(tmp_path / "hat.png")
    return tmp_path / "subject.png", tmp_path / "hat.png"


def test_refs_are_sized_as_wangp_sizes_them_and_stitched_for_kontext(refs: tuple[Path, Path]) -> None:
    first, second = reference_images(request_with(refs, 64, 48), block=16)
    # The main subject fills the canvas; the next keeps its 1:2 aspect at the canvas's pixel count
    # (3072 px: 39.2 x 78.4), each side rounded to the block of 16.
    assert first.size == (64, 48) and second.size == (32, 80)
    joined = stitched([first, second])
    assert joined.size == (64 + 19, 48)  # the second at the first one's height: 32 * 48 / 80
    assert joined.getpixel((0, 0)) == (200, 30, 30) and joined.getpixel((70, 10)) == (30, 200, 30)


def test_the_tiny_kontext_renders_its_reference_images(refs: tuple[Path, Path], tmp_path: Path) -> None:
    outputs = {}
    for name, extra in (("edit", {"image_refs": [p.name for p in refs]}), ("text", {})):
        job = tmp_path / f"{name}.json"
        settings = {
            "model_type": "flux-kontext-tiny",
            "prompt": "add a hat",
            "resolution": "64x48",
            "seed": 3,
        }
        job.write_text(json.dumps(settings | {"num_inference_steps": 2} | extra))
        out = tmp_path / f"out-{name}"
        assert main(["render", str(job), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
        [outputs[name]] = list(out.glob("*.png"))
    edit, text = (np.asarray(Image.open(outputs[name])) for name in ("edit", "text"))
    # The size asked (Kontext's pipeline would otherwise rescale to a megapixel), and the images
    # change the render.
    assert edit.shape == text.shape == (48, 64, 3) and not np.array_equal(edit, text)
    metadata = read_metadata(outputs["edit"])
    assert metadata is not None and metadata["image_refs"] == ["subject.png", "hat.png"]
    assert metadata["model_type"] == "flux-kontext-tiny"


@pytest.mark.parametrize(
    ("model_type", "settings", "refused"),
    [
        # WanGP reads no images without "I", and "I" alone sizes the first one as a person/object.
        ("flux_dev_kontext", {"video_prompt_type": "I"}, 'video_prompt_type: "I"'),
        # FLUX.2's default video_prompt_type is "": WanGP would not read the images.
        ("flux2_dev", {}, 'video_prompt_type: ""'),
        # Kontext removes the background of every image after the main one (rembg).
        ("flux_dev_kontext", {"video_prompt_type": "KI"}, "remove_background_images_ref: 1"),
    ],
)
def test_reference_settings_wangp_would_render_otherwise_are_refused_by_key(
    refs: tuple[Path, Path],
    tmp_path: Path,
    model_type: str,
    settings: dict[str, object],
    refused: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = tmp_path / "job.json"
    base = {"model_type": model_type, "prompt": "a hat", "image_refs": [p.name for p in refs]}
    job.write_text(json.dumps(base | settings))
    assert main(["render", "--dry-run", str(job)]) == 2
    assert refused in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model_type", "settings"),
    [
        ("flux_dev_kontext", {}),
        ("flux_dev_kontext", {"video_prompt_type": "KI", "remove_background_images_ref": 0}),
        ("flux2_dev", {"video_prompt_type": "KI"}),
        ("flux2_klein_4b", {"video_prompt_type": "KI"}),
    ],
)
def test_reference_images_as_wangp_renders_them_are_accepted(
    refs: tuple[Path, Path], tmp_path: Path, model_type: str, settings: dict[str, object]
) -> None:
    job = tmp_path / "job.json"
    names = [p.name for p in refs] if settings else [refs[0].name]
    job.write_text(json.dumps({"model_type": model_type, "prompt": "a hat", "image_refs": names} | settings))
    assert main(["render", "--dry-run", str(job)]) == 0


def test_the_tiny_klein_renders_with_a_reference_image(tmp_path: Path) -> None:
    # FLUX.2's pipeline takes images of at least 64 px a side; the main subject fills the canvas.
    Image.new("RGB", (96, 64), (200, 30, 30)).save(tmp_path / "subject.png")
    job = tmp_path / "klein.json"
    settings = {"model_type": "flux2-klein-tiny", "prompt": "add a hat", "resolution": "64x64", "seed": 2}
    job.write_text(json.dumps(settings | {"num_inference_steps": 1, "image_refs": ["subject.png"]}))
    out = tmp_path / "out"
    assert main(["render", str(job), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    [image] = list(out.glob("*.png"))
    assert np.asarray(Image.open(image)).shape == (64, 64, 3)
    metadata = read_metadata(image)
    assert metadata is not None and metadata["image_refs"] == ["subject.png"]
    assert metadata["model_type"] == "flux2-klein-tiny"
