"""Long videos as WanGP renders them: sliding windows, each continuing the video so far.

WanGP splits a video longer than `sliding_window_size` into windows (shared/utils/frame_scheduler.py
at Wan2GP 8681e9f7, `build_default_window_plan`): the first renders up to a window of new frames;
each next one starts from the last `overlap` frames of the video so far, renders its window, and
gives `output_frames` new ones. A window's frame count is on the model's grid (4k+1 for Wan), so
it may render a few frames past what it needs: those (`trim`), and `discard` frames asked for at
every window's end, are dropped. The frames kept add up to `video_length` exactly.

Pure: the plan and the stitching rule, no model. Which models continue a video, and how, is the
preset's `windows` rule (models.preset.WindowRule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# WanGP's longest video for a model with sliding windows (its frames slider, wgp.py).
MAX_WINDOWED_FRAMES = 737


@dataclass(frozen=True)
class Window:
    """One window of a long video: what it renders and which of its frames the video keeps."""

    frames: int  # frames rendered (on the model's grid)
    overlap: int  # its first frames, which repeat the video so far (0 for the first window)
    discard: int  # frames dropped at its end, as asked (sliding_window_discard_last_frames)
    trim: int  # frames dropped at its end to land on the grid
    output: int  # new frames it adds to the video

    def kept(self, rendered: np.ndarray) -> np.ndarray:
        """The frames of `rendered` (this window's frames, first axis) the video keeps."""
        if len(rendered) != self.frames:
            raise ValueError(f"a window of {self.frames} frames rendered {len(rendered)}")
        end = self.frames - self.discard - self.trim
        return rendered[self.overlap : end]


@dataclass(frozen=True)
class Grid:
    """A model's frame counts: `offset + step*k`, at least `minimum`."""

    minimum: int
    step: int
    offset: int = 1

    def up(self, frames: int) -> int:
        """The least count on the grid at or above `frames`."""
        frames = max(self.minimum, frames)
        if self.step <= 1:
            return frames
        return -(-max(0, frames - self.offset) // self.step) * self.step + self.offset

    def down(self, frames: int) -> int:
        """The greatest count on the grid at or below `frames` (the minimum when below it)."""
        frames = max(self.minimum, frames)
        if self.step <= 1:
            return frames
        lower = (frames - self.offset) // self.step * self.step + self.offset
        return lower if lower >= self.minimum else self.up(self.minimum)


def plan(total: int, window_size: int, overlap: int, discard: int, grid: Grid) -> tuple[Window, ...]:
    """The windows WanGP renders a `total`-frame video in, with windows of `window_size` frames
    sharing `overlap` frames and dropping `discard` at their end; one window when it fits."""
    size = grid.up(window_size)
    discard = discard // grid.step * grid.step
    if total <= size:
        return (
            Window(frames=grid.up(total), overlap=0, discard=0, trim=grid.up(total) - total, output=total),
        )
    first_output = size - discard
    windows = [_window(first_output, 0, discard, grid)]
    done = first_output
    while done < total:
        output = min(total - done, max(1, size - overlap - discard))
        windows.append(_window(output, overlap, discard, grid))
        done += output
    return tuple(windows)


def _window(output: int, overlap: int, discard: int, grid: Grid) -> Window:
    frames = grid.up(output + overlap + discard)
    return Window(frames, overlap, discard, frames - overlap - discard - output, output)


def stitch(kept: list[np.ndarray]) -> np.ndarray:
    """The long video from each window's kept frames, in order."""
    return np.concatenate(kept, axis=0)
