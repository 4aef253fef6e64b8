"""The key layouts of WanGP's Qwen-Image and Z-Image transformer files, for models.single_file.

Qwen-Image (models/qwen/transformer_qwenimage.py at Wan2GP 8681e9f7) and Z-Image
(models/z_image/z_image_transformer2d.py) are built in WanGP from diffusers' module names, and their
files hold those names: they load as they are. Two other layouts reach the same classes: a
ComfyUI-style prefix (`model.diffusion_model.`), dropped here, and Z-Image's original release
names (`x_embedder.`, `final_layer.`, `attention.out`, `q_norm`), renamed with diffusers' own
converter. Fused projections (Qwen's `attn.to_qkv`, Z-Image's `attention.qkv`), which WanGP splits
tensor by tensor, are left under their names, so the loader refuses such a file naming them: these
layouts rename only, and int8 quanto files of them load by name.
"""

from __future__ import annotations

from typing import Any

COMFY_PREFIX = "model.diffusion_model."
# A Z-Image file in the original release's names has its patch embedder here (diffusers:
# all_x_embedder.2-1.).
Z_IMAGE_ORIGINAL_MARK = "x_embedder.weight"
Z_IMAGE_FUSED = ".attention.qkv."


def qwen_image_layout(state: dict[str, Any]) -> dict[str, Any]:
    """Qwen-Image's transformer keys in diffusers' names: WanGP's own names, less a ComfyUI prefix."""
    return {key.removeprefix(COMFY_PREFIX): value for key, value in state.items()}


def z_image_layout(state: dict[str, Any]) -> dict[str, Any]:
    """Z-Image's transformer keys in diffusers' names: WanGP's (diffusers') names as they are; the
    original release's renamed as diffusers' converter renames them (its final norm, which has no
    weights in diffusers' class, dropped); fused qkv keys kept, for the loader to refuse by name."""
    plain = {key.removeprefix(COMFY_PREFIX): value for key, value in state.items()}
    if Z_IMAGE_ORIGINAL_MARK not in plain:
        return plain
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    fused = {key: value for key, value in plain.items() if Z_IMAGE_FUSED in key}
    renamed = convert_z_image_transformer_checkpoint_to_diffusers(
        {key: value for key, value in plain.items() if key not in fused}
    )
    return dict(renamed) | fused
