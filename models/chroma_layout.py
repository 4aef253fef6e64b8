"""The original key layout of Chroma transformers (lodestones' Chroma, FLUX.1 schnell's network
with its per-block modulations replaced by one distilled guidance approximator), as WanGP's Chroma
files hold it, converted to the names of diffusers' ChromaTransformer2DModel.

WanGP's Chroma (models/flux/model.py at Wan2GP 8681e9f7, FluxParams chroma=True) keeps Black Forest
Labs' block names (double_blocks.N.img_attn.qkv, single_blocks.N.linear1, ...) with the
approximator under `distilled_guidance_layer.` (in_proj, layers.N.in_layer/out_layer, norms.N.scale,
out_proj). Diffusers' own converter (convert_chroma_transformer_checkpoint_to_diffusers) fixes the
width at 3072 when it splits `linear1`, so it cannot read a narrower network: the blocks go through
models.flux_layouts' FLUX.1 converter, which reads the width from the file, and the approximator is
renamed here.
"""

from __future__ import annotations

from typing import Any

from models.flux_layouts import flux1_to_diffusers

# The approximator's prefix, the same in both layouts.
APPROXIMATOR = "distilled_guidance_layer."
# Its block parts, original -> diffusers (the RMSNorm's `scale` is diffusers' `weight`).
_APPROXIMATOR_PARTS = (
    (".in_layer.", ".linear_1."),
    (".out_layer.", ".linear_2."),
    (".scale", ".weight"),
)


def chroma_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A Chroma transformer state dict in the original names (optionally under ComfyUI's
    `model.diffusion_model.` prefix) as diffusers' ChromaTransformer2DModel names it; a key it does
    not know is kept as given, for the loader's key check to name. `state` is emptied."""
    # FLUX.1's converter drops the prefix and splits the fused projections; the approximator's keys
    # are not FLUX.1's and come back under their own names.
    out = flux1_to_diffusers(state)
    for key in [key for key in out if key.startswith(APPROXIMATOR)]:
        name = key
        if key.startswith((f"{APPROXIMATOR}layers.", f"{APPROXIMATOR}norms.")):
            for old, new in _APPROXIMATOR_PARTS:
                name = name.replace(old, new)
        out[name] = out.pop(key)
    return out
