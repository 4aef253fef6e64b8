"""Tiny Qwen-Image-Edit and Edit Plus pipelines, and the tiny Qwen-Image transformer as a WanGP file.

The edit pipelines are Qwen-Image's parts (models.tiny's layout: 2-layer MMDiT, Qwen2.5-VL text
encoder, Qwen-Image VAE) plus what editing adds: a Qwen2-VL processor whose vision tower reads the
input images, and a tokenizer trained on the edit prompt template, so that the 64 tokens the
pipelines drop (the system prompt's length under the real tokenizer) are that prompt here too.
The vision tower sees images shrunk to at most MAX_VISION_PIXELS: a few dozen patches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    AutoencoderKLQwenImage,
    QwenImageEditPipeline,
    QwenImageEditPlusPipeline,
    QwenImageTransformer2DModel,
)
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessorPil,
)

from models.qwen_processor import ImageQwenVLProcessor
from models.tiny import QWEN_SPECIALS, qwen_image_scheduler, qwen_tokenizer, qwen_vl_text_encoder, seeded

# The edit pipelines' system prompt (QwenImageEditPipeline.prompt_template_encode, diffusers 0.42),
# before the user turn; the pipelines drop its 64 tokens from the text encoder's output.
EDIT_SYSTEM = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, "
    "objects, background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining consistency with "
    "the original input where appropriate.<|im_end|>\n<|im_start|>user\n"
)
EDIT_DROP_TOKENS = 64
# The vision tower's input: 28-pixel cells (14-pixel patches merged 2x2), at most 4x4 of them.
MAX_VISION_PIXELS = 112 * 112
_PROMPTS = [
    "add a hat",
    "make the sky red and the grass blue",
    "a cat dancing in the rain, cinematic lighting",
    "replace the background with a snowy forest",
    "text, watermark, copyright, blurry, low resolution",
    # Edit Plus names its images before the prompt ("Picture 1: ...").
    "Picture 1: Picture 2: Picture 3:",
]


def edit_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen's tiny BPE trained on the edit template's words and sample edit prompts."""
    words = EDIT_SYSTEM
    for special in QWEN_SPECIALS:
        words = words.replace(special, "\n")
    return qwen_tokenizer([*_PROMPTS, *words.splitlines()] * 3)


def qwen_transformer(**changes: Any) -> Any:
    """Qwen-Image's MMDiT in tiny (2 blocks, 2 heads of 16): the tiny Qwen-Image's own config."""
    config: dict[str, Any] = {
        "patch_size": 2,
        "in_channels": 64,
        "out_channels": 16,
        "num_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "guidance_embeds": False,
        "axes_dims_rope": (8, 4, 4),
    }
    return seeded(lambda: QwenImageTransformer2DModel(**(config | changes)))


def _parts() -> dict[str, Any]:
    tokenizer = edit_tokenizer()
    # Saved as the processor folder the real repos hold, less the video processor (torchvision).
    processor = ImageQwenVLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=MAX_VISION_PIXELS),
        tokenizer=tokenizer,
    )
    # Qwen-Image's VAE with one more downsampling (16x, not 8x): the pipelines encode each input
    # image at about 1024x1024, and the VAE's middle attention spans every latent pixel.
    vae = seeded(
        lambda: AutoencoderKLQwenImage(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True, False],
        )
    )
    return {
        "scheduler": qwen_image_scheduler(),
        "vae": vae,
        "text_encoder": qwen_vl_text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "processor": processor,
    }


def build_qwen_edit() -> Any:
    """Qwen-Image-Edit in tiny: one input image, encoded by the VAE and read by the vision tower."""
    return QwenImageEditPipeline(**_parts(), transformer=qwen_transformer())


def build_qwen_edit_plus() -> Any:
    """Qwen-Image-Edit-2509 (Edit Plus) in tiny: several input images, each named in the prompt."""
    return QwenImageEditPlusPipeline(**_parts(), transformer=qwen_transformer())


def write_qwen_single_file(dest: Path, transformer: Any = None) -> Path:
    """A Qwen-Image transformer (the tiny one by default) saved as one safetensors file in WanGP's key
    layout (models/qwen/transformer_qwenimage.py names its modules as diffusers does); returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    state = (transformer if transformer is not None else qwen_transformer()).state_dict()
    # Checked against the loader's own layout: each name must read back as itself.
    if diffusers_names(list(state), "QwenImageTransformer2DModel") != {key: key for key in state}:
        raise RuntimeError("WanGP's Qwen-Image names do not read back as diffusers' names")
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest
