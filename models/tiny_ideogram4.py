"""Tiny Ideogram 4: two flow-matching transformers (conditional, and unconditional for asymmetric
CFG) over FLUX.2's VAE, reading 13 tapped hidden states of a Qwen3-VL text model, as diffusers'
Ideogram4Pipeline runs it; and its transformers saved in the key layout of WanGP's Ideogram 4 files.

WanGP's Ideogram 4 network (models/ideogram4/modeling_ideogram4.py at Wan2GP 8681e9f7) names each
block's attention projections q, k, v and o where diffusers has to_q, to_k, to_v and to_out.0, and
its files may hold q, k and v fused as one `qkv` (mmgp splits it at load: get_linear_split_map);
`write_ideogram4_single_file` writes either form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Ideogram4Pipeline,
    Ideogram4Transformer2DModel,
)
from diffusers.pipelines.ideogram4.pipeline_ideogram4 import QWEN3_VL_ACTIVATION_LAYERS
from transformers import Qwen3VLConfig, Qwen3VLModel

from models.tiny import QWEN_SPECIALS, qwen_tokenizer, seeded

# The pipeline taps fixed decoder layers up to 35: the tiny text model needs all 36 of Qwen3-VL 8B's.
TEXT_LAYERS = max(QWEN3_VL_ACTIVATION_LAYERS) + 1
TEXT_WIDTH = 8
# Qwen3-VL's chat template for a user turn of text parts, as the pipeline (and WanGP) applies it.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# Ideogram 4's transformer in tiny: 2 layers of 2 heads x 16, 128 latent channels (FLUX.2's 32 in
# 2x2 patches), text features of 13 tapped layers x 8 wide.
_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "intermediate_size": 48,
    "adaln_dim": 16,
    "llm_features_dim": TEXT_WIDTH * len(QWEN3_VL_ACTIVATION_LAYERS),
    # Interleaved (t, h, w) frequencies: every third from 1 and from 2 up to 3x the section must
    # exist among the head's 8.
    "mrope_section": (4, 2, 2),
}


def ideogram4_transformer(**changes: Any) -> Any:
    """The tiny conditional transformer (seeded)."""
    return seeded(lambda: Ideogram4Transformer2DModel(**(_TRANSFORMER | changes)))


def ideogram4_unconditional(**changes: Any) -> Any:
    """The tiny unconditional transformer: the same network with other weights (one random draw
    past the conditional's seed), as the release's two checkpoints differ."""
    import torch

    def build() -> Any:
        torch.rand(1)
        return Ideogram4Transformer2DModel(**(_TRANSFORMER | changes))

    return seeded(build)


def build_ideogram4() -> Any:
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {token: tokenizer.get_vocab()[token] for token in QWEN_SPECIALS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_WIDTH,
            "intermediate_size": 16,
            "num_hidden_layers": TEXT_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 4096,
            # Interleaved M-RoPE sections (time, height, width) over the head's 4 frequencies.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        },
        # The vision tower serves the prompt enhancer's image prompts only; the class always builds one.
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": TEXT_WIDTH,
            "deepstack_visual_indexes": [0],
            "num_position_embeddings": 64,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text_encoder = seeded(lambda: Qwen3VLModel(config).eval())
    # FLUX.2's VAE layout (32 latent channels, 8x spatial) in tiny; the pipeline patchifies 2x2.
    vae = seeded(
        lambda: AutoencoderKLFlux2(
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=32,
            norm_num_groups=4,
            sample_size=64,
        )
    )
    # The pipeline passes its own logit-normal sigmas: the scheduler only steps them (shift 1).
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    return Ideogram4Pipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=ideogram4_transformer(),
        unconditional_transformer=ideogram4_unconditional(),
    )


# Diffusers' names of a block's attention projections -> WanGP's (modeling_ideogram4.py).
_ORIGINAL_PARTS = (
    (".attention.to_q.", ".attention.q."),
    (".attention.to_k.", ".attention.k."),
    (".attention.to_v.", ".attention.v."),
    (".attention.to_out.0.", ".attention.o."),
)


def original_name(key: str) -> str:
    """An Ideogram 4 transformer key in diffusers' names -> WanGP's name."""
    for new, old in _ORIGINAL_PARTS:
        key = key.replace(new, old)
    return key


def write_ideogram4_single_file(
    dest: Path, transformer: Any = None, prefix: str = "", fused_qkv: bool = False
) -> Path:
    """An Ideogram 4 transformer (the tiny conditional one by default) saved as one safetensors file
    in WanGP's names, under `prefix` (ComfyUI's `model.diffusion_model.`, which WanGP strips), with
    each block's q, k and v fused into one `qkv` weight when `fused_qkv`; returns `dest`."""
    import torch
    from safetensors.torch import save_file

    state = (transformer if transformer is not None else ideogram4_transformer()).state_dict()
    out = {prefix + original_name(key): tensor.contiguous() for key, tensor in state.items()}
    if fused_qkv:
        for block in {key.rsplit(".attention.", 1)[0] for key in out if ".attention.q." in key}:
            parts = [out.pop(f"{block}.attention.{name}.weight") for name in ("q", "k", "v")]
            out[f"{block}.attention.qkv.weight"] = torch.cat(parts).contiguous()
    save_file(out, str(dest))
    return dest
