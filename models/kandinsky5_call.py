"""Kandinsky 5's video call as WanGP makes it: the RoPE scale of its YAML config at every size.

WanGP's DiT call (models/kandinsky5/kandinsky/generation_utils.py at Wan2GP 8681e9f7) divides the
visual positions by `conf.metrics.scale_factor`, (1, 2, 2) in each video config (k5_lite_t2v,
k5_lite_i2v, k5_pro_t2v, k5_pro_i2v .yaml). diffusers' Kandinsky 5 video pipelines pick (1, 2, 2)
only when both sides are between 480 and 854 pixels and (1, 3.16, 3.16) otherwise, so a 1280x720
clip would be rendered with other positions than WanGP's.
"""

from __future__ import annotations

from typing import Any

WANGP_ROPE_SCALE = (1.0, 2.0, 2.0)


def with_wangp_rope_scale(pipe: Any) -> Any:
    """`pipe` (a Kandinsky 5 video pipeline) scaling its positions as WanGP does, at any size; a
    pipeline without diffusers' size rule is returned as it is."""
    if hasattr(pipe, "_get_scale_factor"):
        # The same value on every call: setting it on the hot pipeline again changes nothing.
        pipe._get_scale_factor = _wangp_scale
    return pipe


def _wangp_scale(height: int, width: int) -> tuple[float, float, float]:
    return WANGP_ROPE_SCALE
