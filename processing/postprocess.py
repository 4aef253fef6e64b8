"""Post-processing on RGB uint8 frames: WanGP-style film grain and Lanczos resizing."""

from __future__ import annotations

import numpy as np
from PIL import Image

# WanGP's grain is stronger in red and blue than in green, like film's colour layers.
_CHANNEL_GRAIN_SCALE = np.array([2.0, 1.0, 3.0], dtype=np.float32)


def _check_frames(frames: np.ndarray, name: str = "frames") -> None:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {frames.dtype}")
    if frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (F, H, W, 3) or (H, W, 3), got {frames.shape}")


def _check_unit_range(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def film_grain(frames: np.ndarray, intensity: float, saturation: float, seed: int) -> np.ndarray:
    """Add WanGP-style film grain to RGB uint8 frames (F, H, W, 3) or one (H, W, 3); same seed, same grain.

    `intensity` and `saturation` are WanGP's `film_grain_intensity` / `film_grain_saturation` (both in
    [0, 1]); saturation 0 gives grey grain, 1 fully coloured grain. Intensity 0 returns an unchanged copy.
    """
    _check_frames(frames)
    _check_unit_range("intensity", intensity)
    _check_unit_range("saturation", saturation)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if intensity == 0:
        return frames.copy()
    batch = frames if frames.ndim == 4 else frames[np.newaxis]
    rng = np.random.default_rng(seed)
    out = np.empty_like(batch)
    # Frame by frame from one generator: the same grain as drawing all at once, without a float copy
    # of the whole video in memory.
    for index, frame in enumerate(batch):
        grain = rng.standard_normal(frame.shape, dtype=np.float32) * _CHANNEL_GRAIN_SCALE
        grey = grain[..., 1:2]
        grain = grain * np.float32(saturation) + grey * np.float32(1.0 - saturation)
        noisy = frame.astype(np.float32) / 255.0 + np.float32(intensity) * grain
        out[index] = np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out if frames.ndim == 4 else out[0]


def resize_lanczos(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize RGB uint8 frames (F, H, W, 3) or one (H, W, 3) to width x height with PIL's Lanczos filter."""
    _check_frames(frames)
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    batch = frames if frames.ndim == 4 else frames[np.newaxis]
    out = np.empty((batch.shape[0], height, width, 3), dtype=np.uint8)
    for index, frame in enumerate(batch):
        picture = Image.fromarray(np.ascontiguousarray(frame))
        out[index] = np.asarray(picture.resize((width, height), Image.Resampling.LANCZOS))
    return out if frames.ndim == 4 else out[0]
