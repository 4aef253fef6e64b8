"""Kandinsky 5 video models in tiny, built offline for tests: the real diffusers classes
(Kandinsky5Transformer3DModel, HunyuanVideo's VAE, a Qwen2.5-VL text encoder and CLIP's text model)
at a few hundred kB, from a fixed seed; and the tiny transformer written as one file in the original
key layout that WanGP ships (models/kandinsky5 at Wan2GP 8681e9f7).

Kandinsky 5's pipelines wrap each prompt in a long chat template and drop its first 128 tokens (the
template's length under the real Qwen2.5 tokenizer). The tiny tokenizer is trained on the template's
words so that it cuts there too: each word one token, except the template's misspelt "scren", which
the real tokenizer splits as well (trained on it, the prefix would be 125 tokens; without it, 128).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    Kandinsky5I2VPipeline,
    Kandinsky5T2VPipeline,
    Kandinsky5Transformer3DModel,
)
from transformers import PreTrainedTokenizerFast

# The sample prompts the other tiny tokenizers learn: with them the template prefix is 128 tokens.
from models.tiny import (
    PROMPTS,
    QWEN_SPECIALS,
    clip_text,
    hunyuan_vae,
    qwen_tokenizer,
    qwen_vl_text_encoder,
    seeded,
)

# The chat template of diffusers' Kandinsky5T2VPipeline / Kandinsky5I2VPipeline (checked against the
# built pipeline's own), and the tokens they drop from its start.
K5_TEMPLATE = "\n".join(
    [
        "<|im_start|>system\nYou are a prompt engineer. Describe the video in detail.",
        "Describe how the camera moves or shakes, describe the zoom and view angle, "
        "whether it follows the objects.",
        "Describe the location of the video, main characters or objects and their action.",
        "Describe the dynamism of the video and presented actions.",
        "Name the visual style of the video: whether it is a professional footage, user generated content, "
        "some kind of animation, video game or scren content.",
        "Describe the visual effects, postprocessing and transitions if they are presented in the video.",
        "Pay attention to the order of key actions shown in the scene.<|im_end|>",
        "<|im_start|>user\n{}<|im_end|>",
    ]
)
K5_DROP_TOKENS = 128

# Tiny widths: Qwen's hidden size (models.tiny.qwen_vl_text_encoder's) and CLIP's pooled size are
# the transformer's two text inputs.
_TEXT_DIM = 32
_POOLED_DIM = 32


def k5_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny Qwen tokenizer trained on the sample prompts and the words of K5_TEMPLATE but "scren"."""
    pieces = re.split("|".join(map(re.escape, QWEN_SPECIALS)), K5_TEMPLATE.format(""))
    words = [piece.replace(" scren", "") for piece in pieces]
    return qwen_tokenizer([*PROMPTS.splitlines(), *words] * 3)


def k5_transformer(**changes: Any) -> Any:
    """Kandinsky 5's DiT in tiny: text blocks, then visual blocks with cross-attention; visual_cond
    (noise, start-frame latents and their mask side by side: 2 x 16 + 1 channels) as in Lite and Pro."""
    config: dict[str, Any] = {
        "in_visual_dim": 16,
        "out_visual_dim": 16,
        "in_text_dim": _TEXT_DIM,
        "in_text_dim2": _POOLED_DIM,
        "time_dim": 16,
        "patch_size": (1, 2, 2),
        "model_dim": 32,
        "ff_dim": 64,
        "num_text_blocks": 1,
        "num_visual_blocks": 2,
        "axes_dims": (4, 6, 6),  # sums to the head width: 32 / 16 = 2 heads
        "visual_cond": True,
    }
    return seeded(lambda: Kandinsky5Transformer3DModel(**(config | changes)))


def _build(pipeline_class: Any) -> Any:
    tokenizer = k5_tokenizer()
    tokenizer_2, text_encoder_2 = clip_text()
    pipe = pipeline_class(
        transformer=k5_transformer(),
        vae=hunyuan_vae(),
        text_encoder=qwen_vl_text_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        # WanGP's flow_shift for Kandinsky 5 (its scheduler_scale) is 10.
        scheduler=FlowMatchEulerDiscreteScheduler(shift=10.0),
    )
    # The tokenizer above cuts where the pipeline does only for the pipeline's own template.
    if pipe.prompt_template != K5_TEMPLATE or pipe.prompt_template_encode_start_idx != K5_DROP_TOKENS:
        raise RuntimeError(f"{pipeline_class.__name__}'s prompt template is not the tiny tokenizer's")
    return pipe


def build_k5_t2v() -> Any:
    """Kandinsky 5 text-to-video (Lite/Pro layout) in tiny."""
    return _build(Kandinsky5T2VPipeline)


def build_k5_i2v() -> Any:
    """Kandinsky 5 image-to-video in tiny: the same network, the start image as the first latent frame."""
    return _build(Kandinsky5I2VPipeline)


def write_k5_single_file(dest: Path, transformer: Any = None, prefix: str = "") -> Path:
    """The tiny Kandinsky 5 transformer (k5-tiny's, same weights), or `transformer`, saved as one
    safetensors file in the original layout: the module names of WanGP's DiT (models/kandinsky5/
    kandinsky/models/dit.py), which diffusers kept, under an optional `prefix` (a checkpoint saved
    from a wrapper, "model." or "diffusion_model.", which WanGP strips). Returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    state = (transformer if transformer is not None else k5_transformer()).state_dict()
    names = {key: prefix + key for key in state}
    # The inverse is checked against the farm's own converter: each name must map back to itself.
    if diffusers_names(list(names.values()), "Kandinsky5Transformer3DModel") != names:
        raise RuntimeError("the original Kandinsky 5 names written here do not map back to diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest
