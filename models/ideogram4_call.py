"""Ideogram 4's settings as WanGP reads them, and its diffusers call.

WanGP 8681e9f7 (models/ideogram4/ideogram4_handler.py, ideogram4_main.py) renders Ideogram 4 with
WanGP's guidance phases: each step's CFG weight is guidance_scale, then guidance2_scale from the
first step whose noise level is at or below switch_threshold / 1000 (and guidance3_scale below
switch_threshold2 with three phases), over a logit-normal schedule whose mean (custom setting
ideogram_mu, shifted by half the log of the pixel count over 512x512) and spread (ideogram_std) the
file sets. Diffusers' Ideogram4Pipeline takes the same per-step weights (`guidance_schedule`) and
the same schedule (`mu`, `std`), so both are computed here from the settings.

WanGP's handler also rewrites a loaded settings file (fix_settings): a model_mode naming one of its
presets (V4_QUALITY_48, V4_DEFAULT_20, V4_TURBO_12) sets steps, guidance and schedule from that
preset, a sampler outside its own (euler, res_2m, res_2s) becomes euler, and the older CFG-override
custom settings become a switch_threshold. `wangp_fixed` applies the same rewrite.

One difference stays, not measured at real size: WanGP's last step ends at the schedule's clamp
(noise level about 5.5e-4) and decodes there; the pipeline steps on to 0.

WanGP shifts only the timestep the transformer sees by flow_shift (its schedule stays), which the
pipeline has no way to do: a flow_shift other than 1 is refused, as are the RES samplers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from models.phased_guidance import PhasedGuidance

if TYPE_CHECKING:
    from models.preset import ModelPreset
    from models.request import GenerationRequest
    from models.wangp_keys import Reading

FAMILY = "ideogram4"
CUSTOM_KEYS = ("ideogram_mu", "ideogram_std")
# The custom settings' defaults (ideogram4_handler._CUSTOM_SETTINGS), used where a file has none.
DEFAULT_MU = 0.0
DEFAULT_STD = 1.75
# WanGP's own samplers for the model; a file naming another renders with euler (fix_settings).
WANGP_SAMPLERS = ("euler", "res_2m", "res_2s")
# ideogram4_handler._PRESET_SETTINGS: a model_mode names one; each runs two phases at 7 then 3.
PRESETS: dict[str, dict[str, float]] = {
    "V4_QUALITY_48": {"num_inference_steps": 48, "mu": 0.0, "std": 1.5, "switch_threshold": 184},
    "V4_DEFAULT_20": {"num_inference_steps": 20, "mu": 0.0, "std": 1.75, "switch_threshold": 211},
    "V4_TURBO_12": {"num_inference_steps": 12, "mu": 0.5, "std": 1.75, "switch_threshold": 302},
}
_LEGACY_KEYS = (
    "ideogram_cfg_override_enabled",
    "ideogram_cfg_override_start_percent",
    "ideogram_cfg_override_end_percent",
)


def wangp_fixed(given: Mapping[str, Any]) -> dict[str, Any]:
    """A settings object as WanGP's Ideogram 4 handler rewrites it on load (fix_settings)."""
    fixed = dict(given)
    custom = dict(fixed["custom_settings"]) if isinstance(fixed.get("custom_settings"), Mapping) else {}
    mode = fixed.get("model_mode")
    preset = PRESETS.get(mode if isinstance(mode, str) else "") or PRESETS.get(
        str(fixed.get("sample_solver"))
    )
    if preset is not None:
        custom |= {"ideogram_mu": preset["mu"], "ideogram_std": preset["std"]}
        fixed |= {
            "num_inference_steps": int(preset["num_inference_steps"]),
            "guidance_phases": 2,
            "guidance_scale": 7.0,
            "guidance2_scale": 3.0,
            "switch_threshold": int(preset["switch_threshold"]),
            "sample_solver": "euler",
            "flow_shift": 1.0,
        }
    else:
        enabled = custom.get("ideogram_cfg_override_enabled") not in (None, 0, "0", False)
        if enabled and "ideogram_cfg_override_start_percent" in custom:
            shift = float(fixed.get("flow_shift") or 1.0)
            start = 1.0 - float(custom["ideogram_cfg_override_start_percent"])
            fixed["switch_threshold"] = round(shift * start / (1.0 + (shift - 1.0) * start) * 1000.0)
        if fixed.get("sample_solver") not in WANGP_SAMPLERS and "sample_solver" in fixed:
            fixed["sample_solver"] = "euler"
    for key in _LEGACY_KEYS:
        custom.pop(key, None)
    if "custom_settings" in fixed or custom:
        fixed["custom_settings"] = custom or None
    if "model_mode" in fixed:
        fixed["model_mode"] = None
    return fixed


def problems(settings: Mapping[str, Any], flow_shift: float | None) -> list[str]:
    """What WanFarm cannot render of Ideogram 4's settings (and its definition's built-in LoRAs) as
    WanGP would, one line per key."""
    from models.catalogue import get_model

    found = []
    model_type = settings.get("model_type")
    if isinstance(model_type, str) and get_model(model_type).builtin_loras:
        found.append(
            f"loras: the built-in LoRAs of {model_type!r} are not supported by WanFarm yet on Ideogram 4: "
            "WanGP applies each to both transformers, diffusers' pipeline to the conditional one only"
        )
    if flow_shift is not None and flow_shift != 1.0:
        found.append(
            f"flow_shift: {flow_shift} is not supported by WanFarm yet: WanGP shifts only the time the "
            "Ideogram 4 transformer sees (its schedule stays), which diffusers' pipeline cannot; accepted: 1"
        )
    if settings.get("activated_loras"):
        # diffusers' Ideogram4LoraLoaderMixin loads into the conditional transformer only.
        found.append(
            "activated_loras: LoRAs on Ideogram 4 are not supported by WanFarm yet: WanGP applies each to "
            "the conditional and the unconditional transformer (multipliers cond:uncond), diffusers' "
            "pipeline to the conditional one only"
        )
    custom = settings.get("custom_settings")
    if isinstance(custom, Mapping):
        for key, value in custom.items():
            if key not in CUSTOM_KEYS:
                found.append(
                    f"custom_settings: {key!r} is not supported by WanFarm yet: Ideogram 4's custom "
                    f"settings are {', '.join(CUSTOM_KEYS)}"
                )
            elif isinstance(value, bool) or not isinstance(value, int | float):
                found.append(f"custom_settings: {key} must be a number, got {value!r}")
    elif custom is not None:
        found.append(f"custom_settings: must be an object, got {type(custom).__name__}")
    return found


def phased_guidance(reading: Reading) -> PhasedGuidance:
    """The plan of one job as WanGP reads its settings: the scales of the phases it runs (at
    least one), where phases 2 and 3 start, and the schedule's custom settings."""
    count = max(reading.phases, 1)
    scales = tuple(_number(reading.get(key)) for key in _SCALES[:count])
    switches = tuple(_number(reading.get(key)) for key in _SWITCHES[: count - 1])
    custom = reading.get("custom_settings")
    values = custom if isinstance(custom, Mapping) else {}
    return PhasedGuidance(
        scales=scales,
        switches=switches,
        mu=float(values.get("ideogram_mu", DEFAULT_MU)),
        std=float(values.get("ideogram_std", DEFAULT_STD)),
    )


_SCALES = ("guidance_scale", "guidance2_scale", "guidance3_scale")
_SWITCHES = ("switch_threshold", "switch_threshold2")


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def ideogram4_kwargs(preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """Ideogram4Pipeline's guidance and schedule for the request; {} for other families."""
    if preset.family != FAMILY:
        return {}
    plan = request.phased_guidance or PhasedGuidance((request.guidance_scale,), (), DEFAULT_MU, DEFAULT_STD)
    return {
        # Exactly one of the two: the per-step weights stand in for the single scale.
        "guidance_scale": None,
        "guidance_schedule": plan.per_step(request.steps, request.width, request.height),
        "mu": plan.mu,
        "std": plan.std,
    }
