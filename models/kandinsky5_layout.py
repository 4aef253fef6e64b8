"""Kandinsky 5's transformer files in the original layout, and WanGP's k5_config_overrides.

WanGP's DiT (models/kandinsky5/kandinsky/models/dit.py and nn.py at Wan2GP 8681e9f7) has the module
names that diffusers' Kandinsky5Transformer3DModel kept, so its files load by name; a checkpoint
saved from a wrapper carries a prefix that WanGP strips (`_preprocess_dit_state_dict`), as this
layout does. diffusers has no single-file mapping for the class: models.single_file builds it from
its config and loads the state.

A definition's `k5_config_overrides` is merged by WanGP into the model's YAML config. Of what the
definitions set, `metrics.scheduler_scale` changes nothing WanGP renders (kandinsky_main.py's
generate() passes flow_shift as the scheduler scale, which the farm applies as the flow shift);
`model.attention` of type "nabla" selects NABLA sparse attention, which diffusers runs only through
flex attention (on the CPU, a compile of half a minute for a tiny model): refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The prefixes WanGP strips, in its order: the first one any key carries is removed.
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
OVERRIDES_KEY = "k5_config_overrides"
# Settings under `metrics` that change nothing rendered (see the module's docstring).
_INERT_METRICS = frozenset({"scheduler_scale"})


def kandinsky5_layout(state: dict[str, Any]) -> dict[str, Any]:
    """The original names -> diffusers' names: only the wrapper's prefix goes (keys without it are
    kept as they are, so the key check names them)."""
    for prefix in PREFIXES:
        if any(key.startswith(prefix) for key in state):
            return {key.removeprefix(prefix): value for key, value in state.items()}
    return dict(state)


def overrides_problem(overrides: object) -> str:
    """Why the farm cannot render a definition's `k5_config_overrides` as WanGP does, naming the
    entry; "" when it has none or only entries that change nothing rendered."""
    if overrides is None:
        return ""
    if not isinstance(overrides, Mapping):
        return f"{OVERRIDES_KEY} must be an object, not {overrides!r}"
    for section, value in overrides.items():
        if section == "metrics" and isinstance(value, Mapping):
            other = sorted(set(value) - _INERT_METRICS)
            if other:
                return f"{OVERRIDES_KEY}.metrics.{other[0]} is not supported yet"
            continue
        if section == "model" and isinstance(value, Mapping) and set(value) == {"attention"}:
            attention = value["attention"]
            kind = attention.get("type") if isinstance(attention, Mapping) else None
            if kind == "nabla":
                return f"{OVERRIDES_KEY}.model.attention: NABLA sparse attention (flex) is not supported yet"
            return f"{OVERRIDES_KEY}.model.attention ({kind or attention!r}) is not supported yet"
        return f"{OVERRIDES_KEY}.{section} is not supported yet"
    return ""
