"""Z-Image ControlNet's control added as WanGP adds it, every architecture (Wan2GP 8681e9f7
models/z_image/z_image_transformer2d.py): one denoising call of a small random transformer and
ControlNet (two refiner layers steered, four main layers, two controlled) equals WanGP's own
transformer class with the same weights. The expected outputs in
tests/fixtures/wangp/z_image_control_outputs.json were computed by WanGP's class at 8681e9f7 (read
from its repository, its attention as SDPA; see that file's "_about"), from the inputs
`reference()` builds. Union 1.0 is diffusers' pipeline as it is; Union 2.0 and 2.1 need WanGP's
refiner control (models.z_image_union2), without which they differ by far more than the tolerance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from models.z_image_control import VARIANTS
from models.z_image_union2 import wangp_refiner_control
from tests.torch_threads import one_torch_thread

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "z_image_control_outputs.json"
# The transformer's config (WanGP's constructor takes the same keys) and the ControlNet's sizes.
TRANSFORMER: dict[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 32,
    "n_layers": 4,
    "n_refiner_layers": 2,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 32,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [4, 6, 6],
    "axes_lens": [1536, 512, 512],
}
CONTROL: dict[str, Any] = {
    "dim": 32,
    "n_heads": 2,
    "n_kv_heads": 2,
    "n_refiner_layers": 2,
    "control_layers_places": [0, 2],
    "control_refiner_layers_places": [0, 1],
}
SCALE = 0.7


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def reference(architecture: str) -> tuple[Any, Any, dict[str, Any]]:
    """The transformer, the ControlNet (of `architecture`) and one call's inputs, from fixed seeds;
    weights drawn at 0.2 so that every block, the zero-initialised projections too, does something."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel
    from diffusers.models.transformers.transformer_z_image import ZImageTransformer2DModel

    torch.manual_seed(1)
    transformer = ZImageTransformer2DModel(**TRANSFORMER).eval()
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.normal_(0.0, 0.2)
    control_latent = torch.randn(1, 16, 1, 8, 12)
    inputs = {
        "x": torch.randn(16, 1, 8, 12),
        "caption": torch.randn(7, 32),
        "t": torch.tensor([0.4]),
        # Union 2.x's 33 channels: the control latent, then a zero keep mask and inpainting latent.
        "control": control_latent
        if VARIANTS[architecture].in_dim == 16
        else torch.cat([control_latent, torch.zeros(1, 17, 1, 8, 12)], dim=1),
    }
    torch.manual_seed(2)
    controlnet = ZImageControlNetModel(**VARIANTS[architecture].config(**CONTROL))
    with torch.no_grad():
        for parameter in controlnet.parameters():
            parameter.normal_(0.0, 0.2)
    return transformer, controlnet, inputs


def denoise(architecture: str, wangp_control: bool) -> torch.Tensor:
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    transformer, controlnet, inputs = reference(architecture)
    controlnet = ZImageControlNetModel.from_transformer(controlnet, transformer).eval()
    x, caption, t = [inputs["x"]], [inputs["caption"]], inputs["t"]
    with torch.no_grad():
        if wangp_control:
            with wangp_refiner_control(controlnet, transformer, SCALE):
                samples = controlnet(x, t, caption, inputs["control"], conditioning_scale=SCALE)
                out = transformer(x, t, caption, controlnet_block_samples=samples, return_dict=False)
        else:
            samples = controlnet(x, t, caption, inputs["control"], conditioning_scale=SCALE)
            out = transformer(x, t, caption, controlnet_block_samples=samples, return_dict=False)
    return torch.as_tensor(out[0][0])


def wangps(architecture: str) -> torch.Tensor:
    return torch.tensor(json.loads(FIXTURE.read_text())[architecture])


def test_union_1_is_diffusers_pipeline_as_it_is() -> None:
    assert torch.allclose(denoise("z_image_control", False), wangps("z_image_control"), atol=1e-4)


@pytest.mark.parametrize("architecture", ["z_image_control2", "z_image_control2_1"])
def test_union_2_renders_wangps_control_with_its_refiner_control(architecture: str) -> None:
    expected = wangps(architecture)
    assert torch.allclose(denoise(architecture, True), expected, atol=1e-4)
    # diffusers' ControlNet alone steers only its own copy of the refined latent: far from WanGP.
    assert (denoise(architecture, False) - expected).abs().max() > 1.0
