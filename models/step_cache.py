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

# TeaCache (ali-vilab/TeaCache, TeaCache4Wan2.1) polynomials.
_TEA_T2V_1_3B = (2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01)
_TEA_T2V_14B = (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404)
_TEA_I2V_480P = (-3.02331670e02, 2.23948934e02, -5.25463970e01, 5.87348440e00, -2.01973289e-01)
_TEA_I2V_720P = (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683)

# MagCache (Zehong-Ma/MagCache) magnitude ratios, conditional and unconditional interleaved.
_MAG_T2V_1_3B = (
    1.0124, 1.02213, 1.00166, 1.0041, 0.99791, 1.00061, 0.99682, 0.99762, 0.99634, 0.99685, 0.99567,
    0.99586, 0.99416, 0.99422, 0.99578, 0.99575, 0.9957, 0.99563, 0.99511, 0.99506, 0.99535, 0.99531,
    0.99552, 0.99549, 0.99541, 0.99539, 0.9954, 0.99536, 0.99489, 0.99485, 0.99518, 0.99514, 0.99484,
    0.99478, 0.99481, 0.99479, 0.99415, 0.99413, 0.99419, 0.99416, 0.99396, 0.99393, 0.99388, 0.99386,
    0.99349, 0.99349, 0.99309, 0.99304, 0.9927, 0.9927, 0.99228, 0.99226, 0.99171, 0.9917, 0.99137,
    0.99135, 0.99068, 0.99063, 0.99005, 0.99003, 0.98944, 0.98942, 0.98849, 0.98849, 0.98758, 0.98757,
    0.98644, 0.98643, 0.98504, 0.98503, 0.9836, 0.98359, 0.98202, 0.98201, 0.97977, 0.97978, 0.97717,
    0.97718, 0.9741, 0.97411, 0.97003, 0.97002, 0.96538, 0.96541, 0.9593, 0.95933, 0.95086, 0.95089,
    0.94013, 0.94019, 0.92402, 0.92414, 0.90241, 0.9026, 0.86821, 0.86868, 0.81838, 0.81939,
)  # fmt: skip
_MAG_T2V_14B = (
    1.02504, 1.03017, 1.00025, 1.00251, 0.9985, 0.99962, 0.99779, 0.99771, 0.9966, 0.99658, 0.99482,
    0.99476, 0.99467, 0.99451, 0.99664, 0.99656, 0.99434, 0.99431, 0.99533, 0.99545, 0.99468, 0.99465,
    0.99438, 0.99434, 0.99516, 0.99517, 0.99384, 0.9938, 0.99404, 0.99401, 0.99517, 0.99516, 0.99409,
    0.99408, 0.99428, 0.99426, 0.99347, 0.99343, 0.99418, 0.99416, 0.99271, 0.99269, 0.99313, 0.99311,
    0.99215, 0.99215, 0.99218, 0.99215, 0.99216, 0.99217, 0.99163, 0.99161, 0.99138, 0.99135, 0.98982,
    0.9898, 0.98996, 0.98995, 0.9887, 0.98866, 0.98772, 0.9877, 0.98767, 0.98765, 0.98573, 0.9857,
    0.98501, 0.98498, 0.9838, 0.98376, 0.98177, 0.98173, 0.98037, 0.98035, 0.97678, 0.97677, 0.97546,
    0.97543, 0.97184, 0.97183, 0.96711, 0.96708, 0.96349, 0.96345, 0.95629, 0.95625, 0.94926, 0.94929,
    0.93964, 0.93961, 0.92511, 0.92504, 0.90693, 0.90678, 0.8796, 0.87945, 0.86111, 0.86189,
)  # fmt: skip
_MAG_I2V_480P = (
    0.98783, 0.98993, 0.97559, 0.97593, 0.98311, 0.98319, 0.98202, 0.98225, 0.9888, 0.98878, 0.98762,
    0.98759, 0.98957, 0.98971, 0.99052, 0.99043, 0.99383, 0.99384, 0.98857, 0.9886, 0.99065, 0.99068,
    0.98845, 0.98847, 0.99057, 0.99057, 0.98957, 0.98961, 0.98601, 0.9861, 0.98823, 0.98823, 0.98756,
    0.98759, 0.98808, 0.98814, 0.98721, 0.98724, 0.98571, 0.98572, 0.98543, 0.98544, 0.98157, 0.98165,
    0.98411, 0.98413, 0.97952, 0.97953, 0.98149, 0.9815, 0.9774, 0.97742, 0.97825, 0.97826, 0.97355,
    0.97361, 0.97085, 0.97087, 0.97056, 0.97055, 0.96588, 0.96587, 0.96113, 0.96124, 0.9567, 0.95681,
    0.94961, 0.94969, 0.93973, 0.93988, 0.93217, 0.93224, 0.91878, 0.91896, 0.90955, 0.90954, 0.92617,
    0.92616,
)  # fmt: skip
_MAG_I2V_720P = (
    0.99428, 0.99498, 0.98588, 0.98621, 0.98273, 0.98281, 0.99018, 0.99023, 0.98911, 0.98917, 0.98646,
    0.98652, 0.99454, 0.99456, 0.9891, 0.98909, 0.99124, 0.99127, 0.99102, 0.99103, 0.99215, 0.99212,
    0.99515, 0.99515, 0.99576, 0.99572, 0.99068, 0.99072, 0.99097, 0.99097, 0.99166, 0.99169, 0.99041,
    0.99042, 0.99201, 0.99198, 0.99101, 0.99101, 0.98599, 0.98603, 0.98845, 0.98844, 0.98848, 0.98851,
    0.98862, 0.98857, 0.98718, 0.98719, 0.98497, 0.98497, 0.98264, 0.98263, 0.98389, 0.98393, 0.97938,
    0.9794, 0.97535, 0.97536, 0.97498, 0.97499, 0.973, 0.97301, 0.96827, 0.96828, 0.96261, 0.96263,
    0.95335, 0.9534, 0.94649, 0.94655, 0.93397, 0.93414, 0.91636, 0.9165, 0.89088, 0.89109, 0.8679,
    0.86768,
)  # fmt: skip
# Wan 2.2 TI2V 5B rendering without a source video (WanGP's image-to-video list).
_MAG_TI2V_5B = (
    0.99512, 0.99559, 0.99559, 0.99561, 0.99595, 0.99577, 0.99512, 0.99512, 0.99546, 0.99534, 0.99543,
    0.99531, 0.99496, 0.99491, 0.99504, 0.99499, 0.99444, 0.99449, 0.99481, 0.99481, 0.99435, 0.99435,
    0.9943, 0.99431, 0.99411, 0.99406, 0.99373, 0.99376, 0.99413, 0.99405, 0.99363, 0.99359, 0.99335,
    0.99331, 0.99244, 0.99243, 0.99229, 0.99229, 0.99239, 0.99236, 0.99163, 0.9916, 0.99149, 0.99151,
    0.99191, 0.99192, 0.9898, 0.98981, 0.9899, 0.98987, 0.98849, 0.98849, 0.98846, 0.98846, 0.98861,
    0.98861, 0.9874, 0.98738, 0.98588, 0.98589, 0.98539, 0.98534, 0.98444, 0.98439, 0.9831, 0.98309,
    0.98119, 0.98118, 0.98001, 0.98, 0.97862, 0.97859, 0.97555, 0.97558, 0.97392, 0.97388, 0.97152,
    0.97145, 0.96871, 0.9687, 0.96435, 0.96434, 0.96129, 0.96127, 0.95639, 0.95638, 0.95176, 0.95175,
    0.94446, 0.94452, 0.93972, 0.93974, 0.93575, 0.9359, 0.93537, 0.93552, 0.96655, 0.96616,
)  # fmt: skip

# By WanGP model_type (i2v by canvas). Wan 2.2's two-expert models are left out: WanGP shares one
# MagCache across both experts, which WanFarm's pipeline does not do yet.
CALIBRATIONS: dict[str, Calibration] = {
    "t2v_1.3B": Calibration("Wan 2.1 t2v 1.3B", _TEA_T2V_1_3B, _MAG_T2V_1_3B),
    "t2v": Calibration("Wan 2.1 t2v 14B", _TEA_T2V_14B, _MAG_T2V_14B),
    "i2v_480p": Calibration("Wan 2.1 i2v 480p", _TEA_I2V_480P, _MAG_I2V_480P),
    "i2v_720p": Calibration("Wan 2.1 i2v 720p", _TEA_I2V_720P, _MAG_I2V_720P),
    "ti2v_2_2": Calibration("Wan 2.2 ti2v 5B", None, _MAG_TI2V_5B),
}
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
