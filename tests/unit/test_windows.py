"""WanGP's sliding windows (shared/utils/frame_scheduler.py build_default_window_plan and
wgp.py generate_video's trims, read at Wan2GP 8681e9f7): the windows a long video renders in, the
frames each keeps, and which models render them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.settings import SettingsError, parse_settings, resolve
from models.windows import Grid, Window, plan, stitch

WAN = Grid(minimum=5, step=4, offset=1)


def test_a_video_that_fits_is_one_window() -> None:
    assert plan(81, 81, 1, 0, WAN) == (Window(frames=81, overlap=0, discard=0, trim=0, output=81),)


@pytest.mark.parametrize(
    ("total", "size", "discard", "windows"),
    [
        # 81 frames in windows of 33 sharing one frame: 33 new, then 32 + 32 would pass 81, so 16.
        (81, 33, 0, [(33, 0, 0, 0, 33), (33, 1, 0, 0, 32), (17, 1, 0, 0, 16)]),
        # Dropping 4 at each end: 29 kept of the first, 28 new of each next.
        (81, 33, 4, [(33, 0, 4, 0, 29), (33, 1, 4, 0, 28), (29, 1, 4, 0, 24)]),
        # The last window lands on the 4k+1 grid: 10 new frames need 13 rendered, 2 trimmed.
        (43, 33, 0, [(33, 0, 0, 0, 33), (13, 1, 0, 2, 10)]),
        (25, 9, 0, [(9, 0, 0, 0, 9), (9, 1, 0, 0, 8), (9, 1, 0, 0, 8)]),
    ],
)
def test_windows_are_wangps(total: int, size: int, discard: int, windows: list[tuple[int, ...]]) -> None:
    planned = plan(total, size, 1, discard, WAN)
    assert [(w.frames, w.overlap, w.discard, w.trim, w.output) for w in planned] == windows
    assert sum(w.output for w in planned) == total


def test_each_window_keeps_its_new_frames_and_the_video_is_their_sum() -> None:
    planned = plan(43, 33, 1, 0, WAN)
    rendered = [np.arange(w.frames) + 100 * i for i, w in enumerate(planned)]
    kept = [w.kept(frames) for w, frames in zip(planned, rendered, strict=True)]
    assert [len(k) for k in kept] == [33, 10]
    assert kept[1][0] == 101  # the shared frame is the second window's first: dropped
    assert len(stitch(kept)) == 43
    with pytest.raises(ValueError, match="a window of 13 frames rendered 12"):
        planned[1].kept(np.arange(12))


def test_a_long_video_on_a_model_that_continues_is_planned_in_windows(tmp_path: Path) -> None:
    settings = {"model_type": "wan-ti2v-tiny", "video_length": 25, "sliding_window_size": 9}
    job = resolve(parse_settings(settings), tmp_path)
    assert [w.frames for w in job.windows] == [9, 9, 9]
    assert job.work.frames == 9  # placed a window at a time
    assert job.generations[0].metadata["video_length"] == 25


def test_a_video_past_the_model_length_needs_windows_and_wangps_longest_is_the_limit(tmp_path: Path) -> None:
    # wan-ti2v-tiny renders at most 33 frames a call: 41 in one window is refused, in windows it is not.
    with pytest.raises(SettingsError, match="video_length: 41 is not allowed"):
        resolve(parse_settings({"model_type": "wan-tiny", "video_length": 41}), tmp_path)
    one_window = {"model_type": "wan-ti2v-tiny", "video_length": 41}  # WanGP's window: 129
    with pytest.raises(SettingsError, match="give sliding_window_size at most 33"):
        resolve(parse_settings(one_window), tmp_path)
    long = {"model_type": "wan-ti2v-tiny", "video_length": 41, "sliding_window_size": 33}
    assert len(resolve(parse_settings(long), tmp_path).windows) == 2
    with pytest.raises(SettingsError, match=r"video_length: 741 is not allowed .* between 5 and 737"):
        resolve(parse_settings(long | {"video_length": 741}), tmp_path)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"sliding_window_overlap": 5}, "sliding_window_overlap: 5 is not what wan-ti2v-tiny renders"),
        ({"sliding_window_discard_last_frames": 8}, "sliding_window_discard_last_frames: 8 must be between"),
    ],
)
def test_window_settings_the_model_cannot_render_are_refused_by_name(
    tmp_path: Path, extra: dict[str, int], problem: str
) -> None:
    settings = {"model_type": "wan-ti2v-tiny", "video_length": 25, "sliding_window_size": 9} | extra
    with pytest.raises(SettingsError, match=problem):
        resolve(parse_settings(settings), tmp_path)


def test_one_prompt_per_window_on_a_model_without_windows_is_refused_by_name(tmp_path: Path) -> None:
    settings = {"model_type": "wan-tiny", "prompt": "a fox\na heron", "multi_prompts_gen_type": "W"}
    with pytest.raises(SettingsError, match=r"multi_prompts_gen_type: 'W' \(one sliding window per line\)"):
        resolve(parse_settings(settings), tmp_path)


def test_prompts_for_windows_of_a_one_window_video_render_the_first_and_say_so(tmp_path: Path) -> None:
    settings = {"model_type": "wan-ti2v-tiny", "prompt": "a fox\na heron", "multi_prompts_gen_type": "W"}
    job = resolve(parse_settings(settings | {"video_length": 9}), tmp_path)
    assert job.generations[0].request.prompt == "a fox" and job.window_prompts == ()
    assert any("only the first is rendered (as WanGP does)" in warning for warning in job.warnings)


def test_wangps_window_commands_are_refused_by_name(tmp_path: Path) -> None:
    settings = {"model_type": "wan-ti2v-tiny", "video_length": 25, "sliding_window_size": 9}
    with pytest.raises(SettingsError, match=r"prompt: window commands \(\[/duration 1s\]\)"):
        resolve(parse_settings(settings | {"prompt": "[/duration 1s] a fox"}), tmp_path)
