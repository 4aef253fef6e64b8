"""A trace, whichever form its file takes: jobs as JSON lines, or a generator spec to expand.

Here, not in formats, because the generator itself reads and writes formats' records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from scheduler.sim.formats import SimInputError, TraceJob, read_json, read_jsonl
from scheduler.sim.generator import expand_spec


def load_trace(path: Path) -> Iterator[TraceJob]:
    """The jobs of a trace file in time order, read lazily.

    A `.jsonl` file holds one job per line. A `.json` file holding {"generate": {...}} is a
    generator spec (see scheduler.sim.generator.TraceSpec), expanded here deterministically.
    """
    if path.suffix == ".json":
        return expand_spec(path, read_json(path))
    if not path.is_file():
        raise SimInputError(f"{path}: no such trace file")
    return read_jsonl(path)


def check_trace(path: Path) -> None:
    """Read the whole trace once, so a bad line is reported before any simulation starts."""
    for _ in load_trace(path):
        pass
