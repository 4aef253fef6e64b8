"""Step skipping as WanGP does it (skip_steps_cache_type "tea" and "mag"): which denoising steps run.

A skipped step does not run the transformer's blocks: it adds the residual (blocks' output minus
their input) of the last step that ran to this step's input. Which steps are skipped is fixed before
the first one runs, as WanGP fixes it:

- MagCache ("mag"): from the model's published magnitude ratios (one per step, for the conditional
  and the unconditional pass). After the first `start_step` + 1 steps, the ratios of the steps
  since the last computed one are multiplied; their distance from 1 is summed as the error; a step
  is skipped while that error stays under a threshold and at most K = 2 steps in a row are skipped.
  Each pass (conditional, unconditional) decides on its own ratios.
- TeaCache ("tea"): from how much the time embedding changes between steps, mapped through the
  model's published polynomial; a step is skipped while the summed change stays under a
  threshold. The last step always runs; both passes follow the conditional pass's decision.

The threshold is the one of 0.01, 0.02, ... 0.6 that brings the steps run closest to
int(steps / multiplier), searched on the conditional pass. Calibration figures are the published
ones of TeaCache and MagCache for each Wan model, as WanGP (deepbeepmeep/Wan2GP 8681e9f7,
models/wan/wan_handler.py set_cache_parameters) applies them. Pure policy: no torch here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MAG_MAX_SKIPS = 2  # K: steps skipped in a row at most (WanGP's magcache_K for Wan)
MAG_MAX_STEPS = 50  # WanGP refuses MagCache above this many steps
THRESHOLD_STEP = 0.01
THRESHOLD_MAX = 0.6
HIGH_RES_PIXELS = 1280 * 720  # from this canvas up, the 720p calibration of Wan 2.1 i2v


class CacheKind(StrEnum):
    TEA = "tea"
    MAG = "mag"


CACHE_NAMES = {CacheKind.TEA: "TeaCache", CacheKind.MAG: "MagCache"}


@dataclass(frozen=True, slots=True)
class StepSkip:
    """Step skipping as a job asks for it: the cache, how much faster, where it may start."""

    kind: CacheKind
    multiplier: float  # the speed-up aimed at: int(steps / multiplier) steps run
    start_perc: int = 0  # the share of steps (0-100) that always run first

    def describe(self) -> str:
        start = f" from {self.start_perc}%" if self.start_perc else ""
        return f"{CACHE_NAMES[self.kind]} x{self.multiplier:g}{start}"


def skip_to_json(skip: StepSkip | None) -> str:
    """The record as stored beside a job's work: JSON, "null" for none."""
    if skip is None:
        return "null"
    return json.dumps({"kind": skip.kind.value, "multiplier": skip.multiplier, "start_perc": skip.start_perc})


def skip_from_json(text: str) -> StepSkip | None:
    """The record skip_to_json wrote."""
    data = json.loads(text)
    if data is None:
        return None
    return StepSkip(CacheKind(data["kind"]), float(data["multiplier"]), int(data["start_perc"]))


@dataclass(frozen=True)
class Calibration:
    """One model's published figures: TeaCache's polynomial (highest power first) and MagCache's
    magnitude ratios (conditional and unconditional interleaved, from the second step on)."""

    name: str
    tea_coefficients: tuple[float, ...] | None = None
    mag_ratios: tuple[float, ...] | None = None

    def offers(self, kind: CacheKind) -> bool:
        return (self.tea_coefficients if kind is CacheKind.TEA else self.mag_ratios) is not None


@dataclass(frozen=True)
class StepPlan:
    """Which steps run (True) for each pass, and the threshold that chose them."""

    cond: tuple[bool, ...]
    uncond: tuple[bool, ...]
    threshold: float

    @property
    def steps_run(self) -> int:
        """Steps whose conditional pass runs the blocks (WanGP counts skips on that pass)."""
        return sum(self.cond)

    @property
    def steps_skipped(self) -> int:
        return len(self.cond) - self.steps_run


def expected_step_fraction(skip: StepSkip | None) -> float:
    """The share of a job's steps expected to run: 1 without skipping, else WanGP's aim,
    1 / multiplier (its threshold search brings the steps run to int(steps / multiplier))."""
    if skip is None:
        return 1.0
    return min(1.0, 1.0 / skip.multiplier)


def start_step(skip: StepSkip, steps: int) -> int:
    """The last step index that always runs: int(start_perc x steps / 100)."""
    return int(skip.start_perc * steps / 100)


def mag_plan(calibration: Calibration, skip: StepSkip, steps: int) -> StepPlan:
    """MagCache's plan for `steps` steps from the model's published ratios."""
    assert calibration.mag_ratios is not None
    cond, uncond = _mag_ratios_per_step(calibration.mag_ratios, steps)
    first = start_step(skip, steps)
    target = int(steps / skip.multiplier)
    threshold = _best_threshold(lambda t: _mag_runs(cond, first, t), target)
    return StepPlan(_mag_runs(cond, first, threshold), _mag_runs(uncond, first, threshold), threshold)


def tea_plan(calibration: Calibration, skip: StepSkip, changes: Sequence[float]) -> StepPlan:
    """TeaCache's plan from `changes`: per step (the first's is unused), the relative L1 change of
    the time embedding from the step before, mean(|e_i - e_(i-1)|) / mean(|e_(i-1)|)."""
    assert calibration.tea_coefficients is not None
    coefficients = calibration.tea_coefficients
    deltas = [abs(_polynomial(coefficients, change)) for change in changes]
    first = start_step(skip, len(deltas))
    target = int(len(deltas) / skip.multiplier)
    threshold = _best_threshold(lambda t: _tea_runs(deltas, first, t), target)
    runs = _tea_runs(deltas, first, threshold)
    return StepPlan(runs, runs, threshold)


@dataclass(frozen=True, slots=True)
class StepCaching:
    """Step skipping as a job renders it: what was asked and the figures it runs on."""

    skip: StepSkip
    calibration: str  # a key of CALIBRATIONS


class StepCacheRefused(ValueError):
    """A step-skipping setting WanFarm cannot render as WanGP would; `key` is the setting."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def step_caching(
    cache_type: str,
    multiplier: float,
    start_perc: int,
    *,
    model: str,
    offered: Sequence[str] | None,
    pixels: int,
    steps: int,
    legacy_tea: float | None = None,
    legacy_start: int | None = None,
) -> StepCaching | None:
    """The step skipping a job renders, read as WanGP reads its settings; None for none.

    `model` is the WanGP model_type (a catalogue id for WanFarm's own models), `offered` the step
    caches WanGP offers for it (None: not a WanGP model), `pixels` the canvas. tea_cache_setting and
    tea_cache_start_step_perc, WanGP's older names, replace the newer keys when given, as WanGP's
    fix_settings does. StepCacheRefused names what cannot be rendered as WanGP would.
    """
    key = "skip_steps_cache_type"
    if legacy_tea is not None:
        key, cache_type = "tea_cache_setting", "tea" if legacy_tea > 0 else ""
        multiplier = legacy_tea if legacy_tea > 0 else multiplier
    if legacy_start is not None:
        start_perc = legacy_start
    if not cache_type or (offered is not None and not offered):
        return None  # WanGP drops the cache type of a model that offers no step skipping
    shown = legacy_tea if key == "tea_cache_setting" else json.dumps(cache_type)
    accepted = _accepted(model, offered, pixels)
    if cache_type not in set(CacheKind) or (offered is not None and cache_type not in offered):
        raise StepCacheRefused(
            key, f"{shown} is not offered for {model}: WanGP refuses it too; accepted: {accepted}"
        )
    kind = CacheKind(cache_type)
    name = calibration_key(model, kind, pixels)
    if name is None:
        why = _NOT_BUILT.get(model, f"no published {CACHE_NAMES[kind]} calibration for {model}")
        raise StepCacheRefused(key, f"{shown} is not supported by WanFarm yet: {why}; accepted: {accepted}")
    if kind is CacheKind.MAG and steps > MAG_MAX_STEPS:
        raise StepCacheRefused(
            key, f"{shown} runs at most {MAG_MAX_STEPS} steps in WanGP, which refuses {steps}"
        )
    return StepCaching(StepSkip(kind, float(multiplier), int(start_perc)), name)


def calibration_key(model: str, kind: CacheKind, pixels: int) -> str | None:
    """The key of the figures WanGP applies for `model` at a canvas of `pixels`; None when WanFarm
    has none of `kind` for it."""
    name = NATIVE_CALIBRATIONS.get(model, model)
    if name in _BY_CANVAS:  # WanGP's image-to-video class: 480p or 720p figures
        name = "i2v_720p" if pixels >= HIGH_RES_PIXELS else "i2v_480p"
    found = CALIBRATIONS.get(name)
    return name if found is not None and found.offers(kind) else None


def _accepted(model: str, offered: Sequence[str] | None, pixels: int) -> str:
    kinds = [kind for kind in CacheKind if calibration_key(model, kind, pixels) is not None]
    kinds = [kind for kind in kinds if offered is None or kind.value in offered]
    return ", ".join(json.dumps(value) for value in ["", *kinds])


# --- helpers ---------------------------------------------------------------------------------------


def _best_threshold(runs_at: Callable[[float], tuple[bool, ...]], target: int) -> float:
    # From 0.01 up by 0.01 (accumulated as a float, as WanGP does), the first threshold whose steps
    # run are nearest the target; the search stops once a threshold moves away from it.
    best, best_diff = THRESHOLD_STEP, None
    threshold = THRESHOLD_STEP
    while threshold <= THRESHOLD_MAX:
        diff = abs(target - sum(runs_at(threshold)))
        if best_diff is None or diff < best_diff:
            best, best_diff = threshold, diff
        elif diff > best_diff:
            break
        threshold += THRESHOLD_STEP
    return best


def _mag_runs(ratios: Sequence[float], first: int, threshold: float) -> tuple[bool, ...]:
    runs = []
    error, skipped, ratio = 0.0, 0, 1.0
    for step, step_ratio in enumerate(ratios):
        if step <= first:
            runs.append(True)
            continue
        ratio *= step_ratio
        skipped += 1
        error += abs(1 - ratio)
        if error < threshold and skipped <= MAG_MAX_SKIPS:
            runs.append(False)
        else:
            runs.append(True)
            error, skipped, ratio = 0.0, 0, 1.0
    return tuple(runs)


def _tea_runs(deltas: Sequence[float], first: int, threshold: float) -> tuple[bool, ...]:
    runs = []
    accumulated = 0.0
    last = len(deltas) - 1
    for step, delta in enumerate(deltas):
        if step <= first or step == last:
            runs.append(True)
            accumulated = 0.0
            continue
        accumulated += delta
        if accumulated < threshold:
            runs.append(False)
        else:
            runs.append(True)
            accumulated = 0.0
    return tuple(runs)


def _mag_ratios_per_step(ratios: Sequence[float], steps: int) -> tuple[list[float], list[float]]:
    """The conditional and unconditional ratio of each of `steps` steps: the published list (which
    starts at the second step) behind a 1.0 for the first, picked by nearest index when its length
    differs."""
    full = [1.0, 1.0, *ratios]
    cond, uncond = full[0::2], full[1::2]
    if len(full) == 2 * steps:
        return cond, uncond
    return _nearest(cond, steps), _nearest(uncond, steps)


def _nearest(values: Sequence[float], length: int) -> list[float]:
    if length == 1:
        return [values[-1]]
    scale = (len(values) - 1) / (length - 1)
    # round() halves to even, as numpy's rint does.
    return [values[round(index * scale)] for index in range(length)]


def _polynomial(coefficients: Sequence[float], x: float) -> float:
    value = 0.0
    for coefficient in coefficients:
        value = value * x + coefficient
    return value


# --- the published figures -------------------------------------------------------------------------


# By WanGP model_type (i2v by canvas), in a data file beside this one. Wan 2.2's two-expert models
# are left out: WanGP shares one MagCache across both experts, which WanFarm's pipeline does not do yet.
def _calibrations() -> dict[str, Calibration]:
    figures = json.loads((Path(__file__).parent / "step_cache_figures.json").read_text())
    return {
        key: Calibration(
            entry["name"],
            tuple(entry["tea_coefficients"]) if entry["tea_coefficients"] else None,
            tuple(entry["mag_ratios"]) if entry["mag_ratios"] else None,
        )
        for key, entry in figures.items()
        if not key.startswith("_")
    }


CALIBRATIONS = _calibrations()
# WanFarm's own models that share a WanGP model's architecture: the tiny Wan is Wan 2.1 t2v 1.3B's
# transformer, shrunk, and likewise for the others (their random weights make the figures a
# stand-in, not a calibration).
NATIVE_CALIBRATIONS = {"wan-tiny": "t2v_1.3B", "wan-ti2v-tiny": "ti2v_2_2", "wan-flf2v-tiny": "flf2v_720p"}
_BY_CANVAS = {"i2v", "flf2v_720p"}
_NOT_BUILT = {
    "t2v_2_2": "WanGP's MagCache spans Wan 2.2's two experts, which WanFarm does not do yet",
    "i2v_2_2": "WanGP's MagCache spans Wan 2.2's two experts, which WanFarm does not do yet",
    "hunyuan": "HunyuanVideo's TeaCache and MagCache (read inside its first block) are not built",
}
