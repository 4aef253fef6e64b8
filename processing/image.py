"""PNG writing and reading, with WanGP's settings metadata in an iTXt `comment` chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from processing.atomic_file import atomic_target
from processing.metadata import COMMENT_KEY, encode_metadata


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has an empty size {image.shape[1]}x{image.shape[0]}")


def save_png(image: np.ndarray, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """Write an RGB uint8 (H, W, 3) image as PNG, atomically; `metadata` goes in an iTXt `comment` chunk."""
    _check_image(image)
    png_info = None
    if metadata is not None:
        png_info = PngInfo()
        # iTXt (not tEXt) because settings hold UTF-8 prompts; uncompressed, as WanGP writes it.
        png_info.add_itxt(COMMENT_KEY, encode_metadata(metadata))
    picture = Image.fromarray(np.ascontiguousarray(image))
    with atomic_target(Path(path)) as temp:
        picture.save(temp, format="PNG", pnginfo=png_info)


def read_png(path: Path) -> np.ndarray:
    """Read a PNG as RGB uint8 (H, W, 3); grey, palette and alpha images are converted to RGB."""
    path = Path(path)
    with Image.open(path) as picture:
        if picture.format != "PNG":
            raise ValueError(f"{path} is not a PNG file (found {picture.format})")
        return np.asarray(picture.convert("RGB"), dtype=np.uint8).copy()
