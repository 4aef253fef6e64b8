"""processing.rife frame for frame against WanGP's own RIFE code (deepbeepmeep/Wan2GP@8681e9f7,
postprocessing/rife, read at test time from a git clone of WanGP named by $WANFARM_WANGP_GIT, never
copied; skipped without one): the same random weights in the released file's layout give the same
uint8 frames."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from processing import rife
from processing.rife_net import FULL_WIDTHS
from tests.torch_threads import one_torch_thread

MIRROR = Path(os.environ.get("WANFARM_WANGP_GIT", "/nonexistent"))
COMMIT = "8681e9f777f9f847f74a0bdefd13d5b9a6efe12d"
FILES = ("IFNet_HDv3.py", "RIFE_HDv3.py", "RIFE_V4.py", "inference.py", "ssim.py")

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason="no git clone of WanGP named by $WANFARM_WANGP_GIT"
)


@pytest.fixture(scope="module")
def wangp_interpolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    package = tmp_path_factory.mktemp("wangp") / "wangp_rife"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in FILES:
        source = subprocess.run(
            ["git", "-C", str(MIRROR), "show", f"{COMMIT}:postprocessing/rife/{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (package / name).write_text(source)
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module("wangp_rife.inference").temporal_interpolation
    finally:
        sys.path.remove(str(package.parent))


@pytest.fixture(scope="module")
def full_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # WanGP's network is built at the released widths only.
    return rife.save_tiny_weights(tmp_path_factory.mktemp("rife") / "full.pkl", seed=1, widths=FULL_WIDTHS)


def moving_ramp(count: int, still_from: int | None = None) -> np.ndarray:
    ramp = np.linspace(0, 255, 96).astype(np.uint8)
    base = np.broadcast_to(ramp[None, :, None], (40, 96, 3))
    return np.stack([np.roll(base, min(i, still_from or i), axis=1) for i in range(count)])


def wangps_frames(
    interpolation: Callable[..., Any], weights: Path, frames: np.ndarray, exp: int
) -> np.ndarray:
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)
    out = interpolation(str(weights), video, exp, device="cpu", rife_version="v4")
    return out.permute(1, 2, 3, 0).numpy()


@pytest.mark.parametrize(
    ("frames", "factor"),
    [
        (moving_ramp(5), 2),  # frames that move
        (moving_ramp(6, still_from=2), 4),  # a still tail: WanGP's redrawn frames, the last one too
        (np.random.default_rng(3).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8), 2),  # cuts
    ],
    ids=["moving", "still tail", "cuts"],
)
def test_rife_gives_wangps_frames(
    frames: np.ndarray, factor: int, wangp_interpolation: Callable[..., Any], full_weights: Path
) -> None:
    with one_torch_thread():
        ours = rife.upsample(frames, factor, full_weights).frames
        theirs = wangps_frames(wangp_interpolation, full_weights, frames, factor.bit_length() - 1)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
