"""Tiny Wan VACE (WanVACEPipeline) with random weights, and its transformer in WanGP's file layout.

The tiny Wan (UMT5 text, Wan 2.1 VAE, UniPC scheduler from models.tiny) around a
WanVACETransformer3DModel of the tiny Wan's shape with one VACE block: the real architecture, whose
context blocks read the control video's inactive and reactive latents plus the 8x8 mask (96
channels). WanGP ships VACE as two files: the t2v transformer and a module holding only the VACE
blocks (`vace_blocks.N.*`, `vace_patch_embedding.*`), merged at load; `write_vace_files` writes both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import WanVACEPipeline, WanVACETransformer3DModel

from models.tiny import seeded, wan_scheduler, wan_text, wan_transformer, wan_vae, write_wan_single_file

# Wan 2.1 VACE: the inactive and reactive latents (2 x 16 channels) and the mask folded to the
# VAE's 8x8 pixel blocks (64 channels).
VACE_IN_CHANNELS = 2 * 16 + 8 * 8
# The original checkpoint's names of the VACE parts: what WanGP's module files hold.
MODULE_PREFIXES = ("vace_blocks.", "vace_patch_embedding.")


def vace_transformer() -> Any:
    """The tiny Wan transformer's shape with a VACE block at layer 0 (VACE 1.3B has one every
    second layer, 14B every fifth; a two-layer model has room for one)."""
    config = {key: value for key, value in wan_transformer().config.items() if not key.startswith("_")}
    return seeded(
        lambda: WanVACETransformer3DModel(**config, vace_layers=[0], vace_in_channels=VACE_IN_CHANNELS)
    )


def build_wan_vace() -> Any:
    tokenizer, text_encoder = wan_text()
    return WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=vace_transformer(),
        vae=wan_vae(),
        scheduler=wan_scheduler(),
    )


def write_vace_files(folder: Path, transformer: Any = None, stem: str = "tiny_vace") -> tuple[Path, Path]:
    """The tiny VACE transformer (or `transformer`) in the original Wan key layout as WanGP ships
    it: the backbone file (a text-to-video transformer's keys) and the VACE module file, in
    `folder`, named `<stem>_backbone` and `<stem>_module`; returns (backbone, module)."""
    from safetensors.torch import load_file, save_file

    whole = write_wan_single_file(folder / f"{stem}_whole.safetensors", transformer or vace_transformer())
    state = load_file(str(whole))
    whole.unlink()
    module = {key: tensor for key, tensor in state.items() if key.startswith(MODULE_PREFIXES)}
    backbone = {key: tensor for key, tensor in state.items() if key not in module}
    paths = (folder / f"{stem}_backbone.safetensors", folder / f"{stem}_module.safetensors")
    for path, part in zip(paths, (backbone, module), strict=True):
        save_file(part, str(path))
    return paths


def two_expert_vace(boundary_ratio: float) -> Any:
    """WanGP's Wan 2.2 VACE (vace_14B_2_2) in tiny: two experts of the tiny VACE shape whose
    backbones differ (the low-noise one moved by a fixed random offset) and whose VACE blocks are
    one module's, as WanGP merges the same module into Wan 2.2 t2v's two experts."""
    import copy

    import torch

    pipe = build_wan_vace()
    low_noise = copy.deepcopy(pipe.transformer)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in low_noise.named_parameters():
            if not name.startswith(MODULE_PREFIXES):
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return WanVACEPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        transformer=pipe.transformer,
        transformer_2=low_noise,
        vae=pipe.vae,
        scheduler=pipe.scheduler,
        boundary_ratio=boundary_ratio,
    )
