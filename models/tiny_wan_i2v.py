"""Tiny random-weight Wan 2.1 image-to-video: the network of Wan 2.1 I2V and of Wan Fun InP (WanGP's
fun_inp and fun_inp_1.3B, which its code runs as model_type "i2v": 36 input channels, a CLIP image
encoder whose tokens every block cross-attends; models/wan/configs/fun_inp_1.3B.json at Wan2GP
8681e9f7) behind diffusers' WanImageToVideoPipeline, at a few hundred kB from a fixed seed.

Its transformer in WanGP's original key layout is written by
models.tiny_wan_offshoots.write_original_single_file, which covers the image branch.
"""

from __future__ import annotations

from typing import Any

from diffusers import WanImageToVideoPipeline
from transformers import CLIPImageProcessorPil

from models.tiny import wan_image_encoder, wan_scheduler, wan_text, wan_transformer, wan_vae


def wan_i2v_transformer() -> Any:
    """Wan I2V's transformer in tiny: noise, mask and start-image latents in (16 + 4 + 16 channels),
    the image branch (image_dim: the tiny CLIP's width) without FLF2V's position embedding."""
    return wan_transformer(in_channels=36, image_dim=8, added_kv_proj_dim=24)


def build_wan_i2v() -> Any:
    tokenizer, text_encoder = wan_text()
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=wan_vae(),
        scheduler=wan_scheduler(),
        # The PIL backend: the default one needs torchvision, which the farm does not install.
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 4}, crop_size={"height": 4, "width": 4}),
        image_encoder=wan_image_encoder(),
        transformer=wan_i2v_transformer(),
    )
