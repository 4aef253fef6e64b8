"""RIFE temporal upsampling (processing.rife, the built-in post-processor `rife`): frame counts and
frame rates as WanGP gives them, what holds for any weights (a still colour stays, a cut repeats its
first frame), long videos window by window, and the weight file's layout.

WanGP as read at deepbeepmeep/Wan2GP@8681e9f7: postprocessing/rife/temporal_upsampler.py ("rife2",
"rife4"; rife4.26.pkl), inference.py (the walk over the frames), RIFE_V4.py (the network).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models.settings import SettingsError, parse_settings, resolve
from processing import plugins, rife
from processing.plugins import Clip
from processing.rife_net import FULL_WIDTHS, Rife
from tests.torch_threads import one_torch_thread

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rife.save_tiny_weights(tmp_path_factory.mktemp("rife") / "rife-tiny.pkl")


@pytest.fixture(autouse=True)
def _tiny_rife(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(rife.WEIGHTS_ENV, str(tiny_weights))
    with one_torch_thread():
        yield


def noise(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    return RNG.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("value", "frames", "fps"), [("rife2", 9, 32), ("rife4", 17, 64)])
def test_rife_multiplies_the_frame_rate_and_puts_frames_between_each_two(
    value: str, frames: int, fps: int
) -> None:
    job = resolve(parse_settings({"model_type": "wan-tiny", "temporal_upsampling": value}), Path("/none"))
    assert job.postprocessors == ("rife",) and job.overrides is None  # built in: any agent runs it
    assert job.generations[0].metadata["temporal_upsampling"] == value  # recorded as WanGP writes it
    out = plugins.run(job.postprocessors, Clip(noise(5, 40, 56), 16, seed=1), job.settings.as_dict())
    assert out.frames.shape == (frames, 40, 56, 3) and out.fps == fps


@pytest.mark.parametrize(("value", "factor"), [("rife2", 2), ("RIFE4.0", 4), (" rife ", 2), ("rife3", None)])
def test_values_are_read_as_wangp_reads_them(value: str, factor: int | None) -> None:
    assert rife.factor_of(value) == factor


def test_a_still_clip_of_one_colour_stays_that_colour_whatever_the_weights() -> None:
    # Frames alike are WanGP's still frames: each is redrawn halfway between its neighbours, and
    # any flow over one colour gives that colour (to WanGP's rounding down, through -1..1).
    still = np.full((4, 64, 128, 3), 140, np.uint8)
    out = rife.upsample(still, 4, rife.weights_path())
    assert out.frames.shape == (13, 64, 128, 3)
    assert out.frames.min() >= 139 and out.frames.max() <= 140


def test_at_a_cut_the_frame_before_it_is_repeated_and_the_rendered_frames_are_kept() -> None:
    clip = noise(3)  # frames unlike each other: WanGP's cuts
    out = rife.upsample(clip, 2, rife.weights_path()).frames
    assert out.shape == (5, 64, 64, 3)
    rendered, repeats = out[::2], out[1::2]
    # WanGP's round trip through -1..1 truncates: a value comes back as itself or one less.
    assert np.all((clip.astype(int) - rendered) >= 0) and np.all((clip.astype(int) - rendered) <= 1)
    assert np.array_equal(repeats, rendered[:-1])


def test_frames_that_move_are_interpolated_by_the_network() -> None:
    # A smooth picture shifted a pixel a frame: neither still nor a cut, so RIFE draws the middle.
    ramp = np.linspace(0, 255, 96).astype(np.uint8)
    base = np.broadcast_to(ramp[None, :, None], (64, 96, 3))
    clip = np.stack([np.roll(base, shift, axis=1) for shift in range(3)])
    out = rife.upsample(clip, 2, rife.weights_path()).frames
    assert not np.array_equal(out[1], out[0]) and not np.array_equal(out[1], out[2])


def test_a_long_video_is_upsampled_window_by_window() -> None:
    # WanGP upsamples each window as it is rendered, the next starting from the last frame before.
    clip = Clip(noise(7), 16, seed=1, windows=(4, 3))
    out = plugins.run(("rife",), clip, {"temporal_upsampling": "rife4"})
    assert out.frames.shape[0] == (7 - 1) * 4 + 1 and out.fps == 64
    assert out.windows == (13, 12)  # the first window's 4 frames, then 3 more after its last


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"model_type": "wan-tiny", "temporal_upsampling": "rife8"}, "is not one of WanGP's RIFE values"),
        ({"model_type": "flux-tiny", "temporal_upsampling": "rife2"}, "cannot be used with an image"),
    ],
)
def test_a_value_rife_cannot_honour_is_refused_naming_it(settings: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as refused:
        resolve(parse_settings(settings), Path("/none"))
    [problem] = [p for p in refused.value.problems if p.startswith("temporal_upsampling:")]
    assert named in problem


def test_the_released_files_layout_loads_into_the_network(tmp_path: Path) -> None:
    # rife4.26.pkl: a plain state dict under "module.", flow blocks 192..32 wide.
    path = rife.save_tiny_weights(tmp_path / "full.pkl", widths=FULL_WIDTHS)
    state = torch.load(path, weights_only=True)
    assert "module.encode.cnn0.weight" in state and "module.block4.lastconv.0.weight" in state
    assert tuple(state["module.block0.convblock.7.beta"].shape) == (1, 192, 1, 1)
    assert Rife.from_state_dict(state).widths == FULL_WIDTHS


def test_a_tiny_models_rife_is_built_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(rife.WEIGHTS_ENV)
    monkeypatch.setenv("WANFARM_CACHE", str(tmp_path))
    built = rife.weights_path(tiny=True)
    assert built == tmp_path / "rife" / rife.TINY_FILE and Rife.from_state_dict(torch.load(built)).widths
    stamp = built.stat().st_mtime_ns
    assert rife.weights_path(tiny=True).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in built.parent.iterdir()) == [rife.TINY_FILE]  # no partial left


def test_weights_not_rifes_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = torch.load(rife.weights_path(), weights_only=True)
    del state["module.block2.convblock.0.conv.weight"]
    torch.save(state, tmp_path / "short.pkl")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pkl")  # a pickled object, not a state dict
    for name, named in [
        ("short.pkl", "block2.convblock.0.conv.weight"),
        ("module.pkl", "not a plain state dict"),
    ]:
        with pytest.raises(rife.RifeUnavailable, match=named):
            rife.upsample(noise(2), 2, tmp_path / name)
    monkeypatch.setenv(rife.WEIGHTS_ENV, str(tmp_path / "absent.pkl"))
    with pytest.raises(rife.RifeUnavailable, match=r"absent\.pkl is not a file"):
        rife.weights_path()
