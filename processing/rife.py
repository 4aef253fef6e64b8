"""WanGP's RIFE temporal upsampling: `temporal_upsampling` "rife2" puts one frame between each two
(n frames become 2n-1, the frame rate doubles), "rife4" three (4n-3, x4), with RIFE 4.26.

As read at deepbeepmeep/Wan2GP@8681e9f7 (postprocessing/rife/temporal_upsampler.py, inference.py,
ssim.py; wgp.py's perform_temporal_upsampling and its caller), and kept here:
- the frames are padded to a multiple of 64 (zeros right and below) and compared at 32x32 by SSIM;
- a frame nearly the same as the one before (SSIM above 0.996), and every frame past the 101st, is
  replaced by the frame RIFE sees halfway between its neighbours (the last one: between the one
  before and itself);
- between two frames unlike each other (SSIM below 0.2, a cut) the first is repeated;
- a long video is upsampled window by window: each later window starts from the last frame of the
  one before (its output's for the first window, its input's after that), which is dropped again.
The weights are WanGP's file (rife4.26.pkl, a plain state dict), fetched once into the weight cache,
or the file `$WANFARM_RIFE_WEIGHTS` names; a tiny model's job runs a tiny RIFE (random weights in
the same layout, built offline). No torch at import.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from processing.rife_net import Rife

METHOD = "rife"
# The factors WanGP's RIFE offers; its values are the method and the factor: "rife2", "rife4".
FACTORS = (2, 4)
WEIGHTS_FILE = "rife4.26.pkl"  # WanGP's default RIFE version, v4
WEIGHTS_URL = f"https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/{WEIGHTS_FILE}"
WEIGHTS_ENV = "WANFARM_RIFE_WEIGHTS"
# The flow blocks' widths of the tiny RIFE tiny models' jobs and tests run (the released file's
# are 192, 128, 96, 64, 32).
TINY_WIDTHS = (16, 16, 16, 16, 16)
TINY_FILE = "rife-tiny.pkl"

_PAD = 64  # RIFE v4 sees sides on a multiple of 64
_STILL = 0.996  # SSIM above which a frame is taken for a repeat of the one before
_CUT = 0.2  # SSIM below which two frames are taken for a cut
_ALWAYS_MIDDLE_AFTER = 100  # past this frame of a window, every frame is a repeat to WanGP
_PROBE = (32, 32)  # the size frames are compared at


class RifeUnavailable(RuntimeError):
    """RIFE's weights could not be had, or are not RIFE 4.26's."""


@dataclass(frozen=True)
class Upsampled:
    """Interpolated frames (F, H, W, 3 uint8) and how many of them each window gave."""

    frames: np.ndarray
    windows: tuple[int, ...]


def factor_of(value: object) -> int | None:
    """The factor a temporal_upsampling value asks of RIFE, read as WanGP reads it (case and
    spaces aside, "rife" then the factor, 2 when left out: "rife2", "RIFE4.0", "rife"), or None
    for a value that is not RIFE's or a factor it does not offer."""
    text = str(value or "").strip().lower()
    if not text.startswith(METHOD):
        return None
    try:
        factor = float(text[len(METHOD) :] or 2.0)
    except ValueError:
        return None
    return int(factor) if factor in FACTORS else None


def frames_after(count: int, factor: int) -> int:
    """How many frames `count` frames become: (count - 1) * factor + 1."""
    return (count - 1) * factor + 1 if count else 0


def upsample(frames: np.ndarray, factor: int, weights: Path, windows: tuple[int, ...] = ()) -> Upsampled:
    """`frames` (F, H, W, 3 uint8) with `factor - 1` frames between each two, as WanGP's RIFE puts
    them; `windows`, the frame count of each sliding window they were rendered in (() for one),
    are upsampled in turn as WanGP does."""
    import torch

    if factor not in FACTORS:
        raise ValueError(f"RIFE multiplies the frames by 2 or 4, not {factor}")
    windows = windows or (len(frames),)
    if sum(windows) != len(frames):
        raise ValueError(f"windows of {sum(windows)} frames for a video of {len(frames)}")
    net = _network(str(weights))
    steps = round(math.log2(factor))
    # Channels first, frames second, as WanGP holds a video.
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    parts, counts, carried = [], [], None
    start = 0
    with torch.no_grad():
        for size in windows:
            part = video[:, start : start + size]
            start += size
            if carried is None:
                out = _interpolate(net, part, steps)
                carried = out[:, -1:]
            else:
                joined = torch.cat((carried, part), 1)
                carried = joined[:, -1:]
                out = _interpolate(net, joined, steps)[:, 1:]
            parts.append(out)
            counts.append(out.shape[1])
    return Upsampled(torch.cat(parts, 1).permute(1, 2, 3, 0).numpy(), tuple(counts))


def weights_path(tiny: bool = False) -> Path:
    """RIFE's weight file: `$WANFARM_RIFE_WEIGHTS`, else WanGP's, fetched once into the weight
    cache ($WANFARM_CACHE, else ~/.cache/wanfarm/weights) under rife/; for a tiny model's job (random
    weights itself) a tiny RIFE, built there offline as the tiny models are."""
    given = os.environ.get(WEIGHTS_ENV)
    if given:
        path = Path(given)
        if not path.is_file():
            raise RifeUnavailable(f"${WEIGHTS_ENV}: {path} is not a file")
        return path
    root = Path(os.environ.get("WANFARM_CACHE") or Path.home() / ".cache" / "wanfarm" / "weights")
    path = root / "rife" / (TINY_FILE if tiny else WEIGHTS_FILE)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if tiny:  # built beside its place and renamed into it, as a download is
        partial = save_tiny_weights(path.parent / f".partial-{os.getpid()}-{TINY_FILE}")
        partial.replace(path)
    else:
        _download(WEIGHTS_URL, path)
    return path


def save_tiny_weights(path: Path, seed: int = 0, widths: tuple[int, ...] = TINY_WIDTHS) -> Path:
    """A RIFE 4.26 weight file of random weights at `widths` (the real layout, smaller): what tests
    render with, offline. Same seed, same file."""
    import torch

    from processing.rife_net import Rife

    torch.manual_seed(seed)
    net = Rife(widths)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The released file's form: a plain state dict, each key under "module." (trained in parallel).
    torch.save({f"module.{key}": value for key, value in net.state_dict().items()}, path)
    return path


@cache
def _network(weights: str) -> Rife:
    import pickle

    import torch

    from processing.rife_net import Rife, WeightsMismatch

    try:
        # A plain state dict loads without unpickling code; a file that needs more is refused.
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        raise RifeUnavailable(f"{weights} is not a plain state dict of RIFE 4.26: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RifeUnavailable(
            f"{weights} is not a state dict of RIFE 4.26: it holds a {type(state).__name__}"
        )
    try:
        net = Rife.from_state_dict(state)
    except WeightsMismatch as error:
        raise RifeUnavailable(f"{weights}: {error}") from error
    return net.to(_device())


def _device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _interpolate(net: Rife, video: torch.Tensor, steps: int) -> torch.Tensor:
    # video: (3, F, H, W) uint8 -> (3, F', H, W) uint8, WanGP's walk over the frames.
    import torch
    import torch.nn.functional as F

    count, height, width = video.shape[1:]
    device = next(net.parameters()).device
    tall, wide = (-(-side // _PAD) * _PAD for side in (height, width))

    def source(index: int) -> torch.Tensor | None:
        return video[:, index].float().div_(255.0) if index < count else None

    def padded(frame: torch.Tensor) -> torch.Tensor:
        return F.pad(frame.to(device).unsqueeze(0), (0, wide - width, 0, tall - height))

    def probe(frame: torch.Tensor) -> torch.Tensor:
        return F.interpolate(frame, _PROBE, mode="bilinear", align_corners=False)[:, :3]

    kept: list[torch.Tensor] = []

    def keep(frame: torch.Tensor) -> None:
        # WanGP's round trip through -1..1, cropped back to the frame's size.
        kept.append(((frame * 2) - 1).clip(-1.0, 1.0).squeeze(0)[:, :height, :width].unsqueeze(1).cpu())

    first = source(0)
    if first is None:
        return video
    last, current = first, padded(first)
    waiting: torch.Tensor | None = None
    between = 2**steps - 1
    position = 0
    while True:
        if waiting is None:
            position += 1
        frame, waiting = (waiting if waiting is not None else source(position)), None
        if frame is None:
            break
        before, current = current, padded(frame)
        seen_before = probe(before)
        likeness = _ssim(seen_before, probe(current))
        ends = False
        if likeness > _STILL or position > _ALWAYS_MIDDLE_AFTER:
            # A repeated frame: replaced by the middle of the one before and the one after.
            position += 1
            after = source(position)
            if after is None:
                ends, after = True, last
            else:
                waiting = after
            current = net.between(before, padded(after), 0.5)
            likeness = _ssim(seen_before, probe(current))
            frame = current[0][:, :height, :width]
        if likeness < _CUT:
            inserted = [before] * between
        else:
            inserted = [net.between(before, current, (i + 1) / (between + 1)) for i in range(between)]
        keep(last)
        for middle in inserted:
            keep(middle)
        last = frame
        if ends:
            break
    keep(last)
    return torch.cat(kept, 1).add_(1.0).mul_(127.5).clamp_(0, 255).to(torch.uint8)


def _ssim(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    # SSIM of two (1, 3, h, w) pictures taken as one volume (colour the third axis), an 11-wide
    # Gaussian window (sigma 1.5) over edges repeated outward, as WanGP measures likeness.
    import torch
    import torch.nn.functional as F

    low = -1.0 if float(first.min()) < -0.5 else 0.0
    span = (255.0 if float(first.max()) > 128 else 1.0) - low
    window = _window(min(11, first.shape[2], first.shape[3]), str(first.device))

    def blur(volume: torch.Tensor) -> torch.Tensor:
        return F.conv3d(F.pad(volume, (5,) * 6, mode="replicate"), window)

    one, two = first.unsqueeze(1), second.unsqueeze(1)
    mean_one, mean_two = blur(one), blur(two)
    var_one = blur(one * one) - mean_one.pow(2)
    var_two = blur(two * two) - mean_two.pow(2)
    covariance = blur(one * two) - mean_one * mean_two
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    numerator = (2 * mean_one * mean_two + c1) * (2.0 * covariance + c2)
    denominator = (mean_one.pow(2) + mean_two.pow(2) + c1) * (var_one + var_two + c2)
    return torch.mean(numerator / denominator)


@cache
def _window(size: int, device: str) -> torch.Tensor:
    import torch

    weights = torch.tensor([math.exp(-((x - size // 2) ** 2) / (2 * 1.5**2)) for x in range(size)])
    line = (weights / weights.sum()).unsqueeze(1)
    volume = line.mm(line.t()).unsqueeze(2) @ line.t()
    return volume.expand(1, 1, size, size, size).contiguous().to(device)


def _download(url: str, path: Path) -> None:
    # Written beside its place and renamed into it, so a broken download never counts as the file.
    import shutil
    from urllib.request import urlopen

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".partial-", delete=False) as out:
        partial = Path(out.name)
        try:
            with urlopen(url, timeout=60) as response:
                expected = response.headers.get("Content-Length")
                shutil.copyfileobj(response, out, 1 << 20)
        except (OSError, ValueError) as error:
            partial.unlink(missing_ok=True)
            raise RifeUnavailable(f"could not fetch RIFE's weights {url}: {error}") from error
    if expected is not None and int(expected) != partial.stat().st_size:
        partial.unlink(missing_ok=True)
        raise RifeUnavailable(f"could not fetch RIFE's weights {url}: the download was cut short")
    partial.replace(path)
