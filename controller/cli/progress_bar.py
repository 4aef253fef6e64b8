"""A per-job progress bar on stderr: redrawn in place on a terminal, one line per phase in logs."""

from __future__ import annotations

import sys
from typing import TextIO

from models.progress import Phase, Progress

WIDTH = 24


class ProgressBar:
    """A progress callback that draws `label  phase  [####....]  step/total`."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        # Looked up now, not at import: the process's stderr may have been replaced since.
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._last_phase: Phase | None = None

    def __call__(self, progress: Progress) -> None:
        if not self.live and progress.phase == self._last_phase:
            return
        filled = WIDTH * progress.step // max(progress.total, 1)
        bar = "#" * filled + "." * (WIDTH - filled)
        line = f"{self.label}  {progress.phase.value:<9}  [{bar}]  {progress.step}/{progress.total}"
        end = "\n" if progress.phase is Phase.DONE or not self.live else ""
        self.stream.write(("\r" if self.live else "") + line + end)
        self.stream.flush()
        self._last_phase = progress.phase
