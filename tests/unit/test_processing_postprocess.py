"""Film grain (deterministic per seed, WanGP's saturation semantics) and Lanczos resizing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from processing.postprocess import film_grain, resize_lanczos


def frames(count: int = 3, height: int = 24, width: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 6 + 30, y * 7 + 20, np.full_like(x, 128)], axis=-1)
    return np.repeat(image[np.newaxis], count, axis=0).astype(np.uint8)


def test_grain_is_deterministic_per_seed() -> None:
    source = frames()
    first = film_grain(source, intensity=0.1, saturation=0.5, seed=11)
    assert np.array_equal(first, film_grain(source, intensity=0.1, saturation=0.5, seed=11))
    assert not np.array_equal(first, film_grain(source, intensity=0.1, saturation=0.5, seed=12))


def test_grain_changes_pixels_and_keeps_shape_and_dtype() -> None:
    source = frames()
    grained = film_grain(source, intensity=0.1, saturation=0.5, seed=1)
    assert grained.shape == source.shape
    assert grained.dtype == np.uint8
    difference = np.abs(grained.astype(np.int16) - source.astype(np.int16))
    assert difference.mean() > 5
    # Every frame gets its own grain, not one pattern repeated.
    assert not np.array_equal(grained[0], grained[1])
    assert np.array_equal(source, frames())  # the input is not modified


def test_zero_intensity_returns_the_frames_unchanged() -> None:
    source = frames()
    result = film_grain(source, intensity=0, saturation=0.5, seed=1)
    assert np.array_equal(result, source)
    assert result is not source


def test_zero_saturation_gives_grey_grain() -> None:
    grey = np.full((2, 16, 16, 3), 128, np.uint8)
    # Small intensity so nothing clips: the same offset then lands on all three channels.
    grained = film_grain(grey, intensity=0.01, saturation=0.0, seed=5)
    assert np.array_equal(grained[..., 0], grained[..., 1])
    assert np.array_equal(grained[..., 1], grained[..., 2])
    coloured = film_grain(grey, intensity=0.01, saturation=1.0, seed=5)
    assert not np.array_equal(coloured[..., 0], coloured[..., 2])


def test_grain_accepts_a_single_image() -> None:
    image = frames(count=1)[0]
    grained = film_grain(image, intensity=0.2, saturation=0.5, seed=3)
    assert grained.shape == image.shape
    assert not np.array_equal(grained, image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intensity": -0.1}, "intensity"),
        ({"intensity": 1.5}, "intensity"),
        ({"saturation": 2.0}, "saturation"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_grain_validates_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"intensity": 0.1, "saturation": 0.5, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        film_grain(frames(), **arguments)


def test_grain_refuses_float_frames() -> None:
    with pytest.raises(ValueError, match="dtype uint8"):
        film_grain(frames().astype(np.float32), intensity=0.1, saturation=0.5, seed=0)


def test_resize_gives_the_asked_size_for_videos_and_images() -> None:
    video = frames(count=4, height=24, width=32)
    assert resize_lanczos(video, width=64, height=36).shape == (4, 36, 64, 3)
    assert resize_lanczos(video[0], width=10, height=8).shape == (8, 10, 3)


def test_resize_keeps_a_flat_colour_flat() -> None:
    flat = np.full((2, 24, 32, 3), (200, 100, 50), np.uint8)
    resized = resize_lanczos(flat, width=48, height=40)
    assert np.array_equal(resized, np.full((2, 40, 48, 3), (200, 100, 50), np.uint8))


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, -1), (10.5, 10)])
def test_resize_refuses_bad_sizes(width: Any, height: Any) -> None:
    with pytest.raises(ValueError, match=r"width|height"):
        resize_lanczos(frames(), width=width, height=height)
