"""The key layout of WanGP's Krea 2 transformer files, for models.single_file.

WanGP's Krea 2 network (models/krea2/krea2_mmdit.py at Wan2GP 8681e9f7) keeps the original
release's module names (first, blocks.N.attn.wq, txtfusion, last.modulation, ...), optionally under
ComfyUI's `model.diffusion_model.` prefix, which WanGP strips (krea2_main.preprocess_sd). Diffusers'
own converter renames them and reshapes each block's flattened modulation vectors to (6, dim): a
tensor change, so this layout does not run over names alone.
"""

from __future__ import annotations

from typing import Any


def krea2_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """Krea 2's transformer keys (original or ComfyUI-prefixed) in diffusers' names and shapes."""
    from diffusers.loaders.single_file_utils import convert_krea2_transformer_checkpoint_to_diffusers

    return dict(convert_krea2_transformer_checkpoint_to_diffusers(dict(state)))
