"""Tiny Z-Image ControlNets, one per WanGP control architecture (models.z_image_control), at the
tiny Z-Image's sizes, in diffusers' ZImageControlNetPipeline over the tiny Z-Image's components;
and a ControlNet saved as WanGP's module files hold it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.tiny import seeded
from models.tiny_z_image import build_z_image
from models.z_image_control import ORIGINAL_NAMES, VARIANTS

# The tiny Z-Image's sizes (models.tiny_z_image: 2 layers of width 32, one refiner layer), with
# the control blocks on both layers and the refiner control on its one layer.
SIZES: dict[str, Any] = {
    "dim": 32,
    "n_heads": 2,
    "n_kv_heads": 2,
    "n_refiner_layers": 1,
    "control_layers_places": [0, 1],
    "control_refiner_layers_places": [0],
}


def z_image_controlnet(architecture: str) -> Any:
    """The tiny ControlNet of a WanGP control architecture, from a fixed seed."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    config = VARIANTS[architecture].config(**SIZES)
    return seeded(lambda: _trained_looking(ZImageControlNetModel(**config)))


def _trained_looking(controlnet: Any) -> Any:
    # Its projections into and out of the control blocks start at zero (a ControlNet's training
    # starts from no effect); random ones make the tiny control change the image, as a trained one.
    import torch

    with torch.no_grad():
        for name, tensor in controlnet.named_parameters():
            if ".before_proj." in name or ".after_proj." in name:
                tensor.normal_(0.0, 0.2)
    return controlnet


def build_z_image_control(architecture: str = "z_image_control") -> Any:
    """ZImageControlNetPipeline over the tiny Z-Image's very components and a tiny ControlNet."""
    from diffusers import ZImageControlNetPipeline

    return ZImageControlNetPipeline(**build_z_image().components, controlnet=z_image_controlnet(architecture))


def write_control_module(dest: Path, controlnet: Any, original: bool = False, prefix: str = "") -> Path:
    """`controlnet` saved as one safetensors file: in diffusers' names (the release's, which WanGP's
    files keep), or with `original` the attention names WanGP renames on load; under `prefix`.
    Union 2.0's file also holds refiner blocks it never runs (zero-initialised, as the release's),
    written beside its own."""
    from safetensors.torch import save_file

    state = {key: tensor.detach().contiguous() for key, tensor in controlnet.state_dict().items()}
    if controlnet.config.add_control_noise_refiner == "control_layers":
        unused = z_image_controlnet("z_image_control2_1").state_dict()
        state |= {
            key: value.zero_() for key, value in unused.items() if key.startswith("control_noise_refiner.")
        }
    out = {}
    for key, tensor in state.items():
        name = key
        if original:
            for new, old in ORIGINAL_NAMES:
                name = name.replace(new, old)
        out[prefix + name] = tensor
    save_file(out, str(dest))
    return dest
