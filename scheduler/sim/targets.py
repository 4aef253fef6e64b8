"""A measured figure against its limit. Nothing measured (None, NaN) is a miss, never a pass."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

NO_DATA = "no data"


@dataclass(frozen=True)
class Target:
    value: float | None  # None: nothing was measured
    target: float
    ok: bool
    note: str = ""


def at_most(value: float | None, limit: float, note: str = "") -> Target:
    """Met when `value` was measured and is at most `limit`."""
    return _judged(value, limit, note, lambda v: v <= limit)


def at_least(value: float | None, limit: float, note: str = "") -> Target:
    """Met when `value` was measured and is at least `limit`."""
    return _judged(value, limit, note, lambda v: v >= limit)


def _judged(value: float | None, limit: float, note: str, met: Callable[[float], bool]) -> Target:
    if value is None or math.isnan(value):
        return Target(None, limit, False, f"{NO_DATA}: {note}" if note else NO_DATA)
    return Target(value, limit, met(value), note)
