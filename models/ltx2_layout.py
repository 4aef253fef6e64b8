"""LTX-2's transformer in its original key layout (Lightricks' checkpoints, WanGP's
`ltx-2-19b-..._diffusion_model` files): diffusers' converter reads it, and the tiny transformer is
written in it to prove that a file in that layout loads.

The original names carry `model.diffusion_model.`, name the patch projections `patchify_proj`, the
timestep modulations `adaln_single` / `audio_adaln_single` and `av_ca_*_adaln_single`, and the QK
norms `q_norm` / `k_norm`; the rest match diffusers'. Text connectors stored beside the transformer
are dropped: the pipeline's own `connectors` folder holds them.
"""

from __future__ import annotations

from typing import Any

PREFIX = "model.diffusion_model."
# Diffusers' names back to the original ones, the inverse of the converter's renames; the longer
# names first, so that a name inside another is not replaced within it.
_ORIGINAL_RENAMES = (
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("norm_q", "q_norm"),
    ("norm_k", "k_norm"),
)


def ltx2_layout(state: dict[str, Any]) -> dict[str, Any]:
    """An LTX-2 transformer state dict in the original names -> diffusers' names (names only)."""
    from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers

    # The converter pops from what it is given: a copy keeps the caller's dict whole.
    return dict(convert_ltx2_transformer_to_diffusers(dict(state)))


def original_name(key: str) -> str:
    """The original LTX-2 name of one diffusers transformer key."""
    if key.startswith("proj_in."):
        key = "patchify_proj." + key.removeprefix("proj_in.")
    elif key.startswith("audio_proj_in."):
        key = "audio_patchify_proj." + key.removeprefix("audio_proj_in.")
    elif key.startswith("time_embed."):
        key = "adaln_single." + key.removeprefix("time_embed.")
    elif key.startswith("audio_time_embed."):
        key = "audio_adaln_single." + key.removeprefix("audio_time_embed.")
    for diffusers_name, original in _ORIGINAL_RENAMES:
        key = key.replace(diffusers_name, original)
    return PREFIX + key
