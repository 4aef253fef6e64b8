"""PNG round trips with the settings JSON in an iTXt `comment` chunk, as WanGP writes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from processing.image import read_png, save_png
from processing.metadata import decode_metadata, read_metadata

SETTINGS = {"prompt": "a café at dusk, 雨", "seed": 7, "image_mode": 1}


def gradient_image(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def test_round_trip_keeps_pixels_and_metadata(tmp_path: Path) -> None:
    image = gradient_image()
    path = tmp_path / "out.png"
    save_png(image, path, SETTINGS)
    assert np.array_equal(read_png(path), image)
    assert read_metadata(path) == SETTINGS


def test_comment_is_an_itxt_chunk_pil_reads_as_text(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    save_png(gradient_image(), path, SETTINGS)
    assert b"iTXtcomment\x00" in path.read_bytes()
    with Image.open(path) as picture:
        assert json.loads(picture.text["comment"]) == SETTINGS  # type: ignore[attr-defined]


def test_without_metadata_reads_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    save_png(gradient_image(), path, None)
    assert read_metadata(path) is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((48, 64, 3), np.float32), "dtype uint8"),
        (np.zeros((2, 48, 64, 3), np.uint8), "shape"),
        (np.zeros((48, 64), np.uint8), "shape"),
        (np.zeros((48, 64, 4), np.uint8), "shape"),
    ],
)
def test_bad_images_are_refused(tmp_path: Path, image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_png(image, tmp_path / "bad.png", None)
    assert list(tmp_path.iterdir()) == []


def test_success_leaves_only_the_final_file(tmp_path: Path) -> None:
    save_png(gradient_image(), tmp_path / "out.png", SETTINGS)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_read_png_converts_other_modes_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 6), 200, np.uint8)).save(path)
    assert np.array_equal(read_png(path), np.full((4, 6, 3), 200, np.uint8))


@pytest.mark.parametrize(
    "text", [None, "", "   ", "not json", "[1, 2]", '{"_wangp_metadata_reserved": true}      ']
)
def test_decode_metadata_gives_none_for_non_settings(text: str | None) -> None:
    assert decode_metadata(text) is None


def test_decode_metadata_tolerates_padding_and_bom() -> None:
    assert decode_metadata('\ufeff{"seed": 1}   \0\0') == {"seed": 1}
