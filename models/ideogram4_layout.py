"""The key layout of WanGP's Ideogram 4 transformer files, for models.single_file.

WanGP's network (models/ideogram4/modeling_ideogram4.py at Wan2GP 8681e9f7) has diffusers' module
names but for each block's attention projections (q, k, v, o: diffusers' to_q, to_k, to_v,
to_out.0), and WanGP reads a file whose q, k and v are fused as one `qkv` weight by splitting it in
three equal rows (get_linear_split_map); a ComfyUI `model.diffusion_model.` prefix is stripped
(ideogram4_main._strip_transformer_wrapper). The split is a tensor change: not names alone.
"""

from __future__ import annotations

from typing import Any

PREFIX = "model.diffusion_model."
_RENAMES = (
    (".attention.q.", ".attention.to_q."),
    (".attention.k.", ".attention.to_k."),
    (".attention.v.", ".attention.to_v."),
    (".attention.o.", ".attention.to_out.0."),
)
_FUSED = ".attention.qkv."


def ideogram4_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """Ideogram 4's transformer tensors (WanGP's names, fused qkv or not, optionally prefixed) in
    diffusers' names."""
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        name = key.removeprefix(PREFIX)
        if _FUSED in name:
            block, _, rest = name.partition(_FUSED)
            for part, piece in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0), strict=True):
                out[f"{block}.attention.{part}.{rest}"] = piece.contiguous()
            continue
        for old, new in _RENAMES:
            name = name.replace(old, new)
        out[name] = tensor
    return out
