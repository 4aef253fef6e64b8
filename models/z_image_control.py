"""Z-Image Turbo's ControlNets as WanGP ships them (architectures z_image_control,
z_image_control2, z_image_control2_1 at Wan2GP 8681e9f7), read as diffusers' ZImageControlNetModel.

WanGP merges a ControlNet "module" (the Z-Image-Turbo-Fun-Controlnet-Union files of its
definitions' `modules`) into its own Z-Image transformer (models/z_image/z_image_transformer2d.py,
configs/z_image_control*.json); diffusers keeps it beside the transformer, which it shares the
embedders and refiners of. The three architectures map to diffusers' three modes:

- z_image_control (Union 1.0): 6 control blocks, the control latent alone (16 channels), the control
  tokens refined by blocks of their own (diffusers' add_control_noise_refiner None);
- z_image_control2 (Union 2.0): 15 control blocks, whose first two also steer the noise refiner
  (WanGP's use_separate_control_refiner off; diffusers' "control_layers"), 33 input channels;
- z_image_control2_1 (Union 2.1): the same with refiner control blocks of their own (WanGP's
  use_separate_control_refiner; diffusers' "control_noise_refiner").

The 33 channels are the control latent, a keep mask and an inpainting latent; without an inpainting
mask WanGP fills the last 17 with zeros (pipeline_z_image.py), as diffusers' pipeline does. Not yet
wired into the catalogue: what is missing is said in models.unserved_architectures. Pure of torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.qwen_layouts import COMFY_PREFIX


@dataclass(frozen=True)
class ControlVariant:
    """One WanGP Z-Image control architecture as ZImageControlNetModel's config."""

    places: tuple[int, ...]  # the transformer layers each control block's output is added after
    refiner_places: tuple[int, ...]  # the noise refiner layers steered (2.x)
    in_dim: int  # channels of the control input
    mode: str | None  # diffusers' add_control_noise_refiner

    def config(self, **sizes: Any) -> dict[str, Any]:
        """ZImageControlNetModel's config for this variant at the transformer `sizes` (dim,
        n_heads, n_kv_heads, n_refiner_layers, ...; Z-Image Turbo's when none are given)."""
        return {
            "control_layers_places": list(self.places),
            "control_refiner_layers_places": list(self.refiner_places),
            "control_in_dim": self.in_dim,
            "add_control_noise_refiner": self.mode,
        } | sizes


# Transcribed from WanGP's models/z_image/configs/z_image_control*.json (8681e9f7).
_EVERY_OTHER = tuple(range(0, 30, 2))
VARIANTS: dict[str, ControlVariant] = {
    "z_image_control": ControlVariant((0, 5, 10, 15, 20, 25), (0, 1), 16, None),
    "z_image_control2": ControlVariant(_EVERY_OTHER, (0, 1), 33, "control_layers"),
    "z_image_control2_1": ControlVariant(_EVERY_OTHER, (0, 1), 33, "control_noise_refiner"),
}

# The original release's attention names, which WanGP renames on load (z_image_main.conv_state_dict).
ORIGINAL_NAMES = (
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_q.", ".attention.q_norm."),
    (".attention.norm_k.", ".attention.k_norm."),
)
# A fused projection, which WanGP splits tensor by tensor: refused by name here.
FUSED_QKV = ".attention.qkv."


class ControlModuleRefused(ValueError):
    """A ControlNet module file that does not load as the architecture's ControlNet."""


def controlnet_layout(state: dict[str, Any], variant: ControlVariant) -> dict[str, Any]:
    """A control module's keys in diffusers' names: a ComfyUI prefix dropped, the original
    release's attention names renamed; Union 2.0's refiner blocks, which neither WanGP nor
    diffusers runs (its control blocks steer the refiner), left out."""
    out = {}
    for key, value in state.items():
        name = key.removeprefix(COMFY_PREFIX)
        for new, old in ORIGINAL_NAMES:
            name = name.replace(old, new)
        if variant.mode == "control_layers" and name.startswith("control_noise_refiner."):
            continue
        out[name] = value
    return out


def load_controlnet(path: Path, architecture: str, sizes: dict[str, Any], dtype: Any) -> Any:
    """The ControlNet of WanGP architecture `architecture` with the weights of the module file
    `path`, at the transformer `sizes`; ControlModuleRefused names fused, missing or unknown keys."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel
    from safetensors.torch import load_file

    variant = VARIANTS[architecture]
    state = controlnet_layout(load_file(str(path)), variant)
    fused = sorted(key for key in state if FUSED_QKV in key)
    if fused:
        raise ControlModuleRefused(f"{path.name}: fused attention.qkv projections: {', '.join(fused[:4])}")
    model = ZImageControlNetModel(**variant.config(**sizes))
    expected = set(model.state_dict())
    missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unknown:
        raise ControlModuleRefused(
            f"{path.name} is not a {architecture} module: missing {', '.join(missing[:4]) or 'none'}; "
            f"unknown {', '.join(unknown[:4]) or 'none'}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(dtype)
