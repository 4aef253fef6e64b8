"""Tiny Krea 2: the single-stream DiT whose text-fusion stage reads a stack of Qwen3-VL hidden
states, over Qwen-Image's VAE, as diffusers' Krea2Pipeline runs it; and its transformer saved in
the original key layout of WanGP's Krea 2 files.

WanGP's Krea 2 network (models/krea2/krea2_mmdit.py at Wan2GP 8681e9f7) keeps the original
release's module names (first, blocks.N.attn.wq, txtfusion, last, ...), which diffusers'
`convert_krea2_transformer_checkpoint_to_diffusers` renames; `write_krea2_single_file` writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    Krea2Pipeline,
    Krea2Transformer2DModel,
)
from transformers import Qwen3VLConfig, Qwen3VLModel

from models.tiny import QWEN_SPECIALS, qwen_image_vae, qwen_tokenizer, seeded

# The tiny text encoder's hidden states the transformer fuses (0 is the embedding output): two of
# its three layers, as the real pipeline taps 12 of Qwen3-VL-4B's 36.
TEXT_LAYERS = (1, 3)


def krea2_transformer(**changes: Any) -> Any:
    """Krea 2's DiT in tiny: 2 layers, 2 heads of 16 (one kv head), text fusion over 2 tapped layers."""
    config: dict[str, Any] = {
        "in_channels": 64,  # 16 latent channels in 2x2 patches
        "num_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 48,
        "timestep_embed_dim": 32,
        "text_hidden_dim": 32,
        "num_text_layers": len(TEXT_LAYERS),
        "text_num_attention_heads": 2,
        "text_num_key_value_heads": 2,
        "text_intermediate_size": 48,
        "num_layerwise_text_blocks": 1,
        "num_refiner_text_blocks": 1,
        "axes_dims_rope": (4, 6, 6),  # sums to the head dim
    }
    return seeded(lambda: Krea2Transformer2DModel(**(config | changes)))


def build_krea2() -> Any:
    tokenizer = qwen_tokenizer()
    ids = {token: tokenizer.get_vocab()[token] for token in QWEN_SPECIALS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            # Interleaved M-RoPE sections (time, height, width) sum to half the head dim.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        # The vision tower only serves image prompts; the class always builds one.
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 32,
            "deepstack_visual_indexes": [0],
            "num_position_embeddings": 64,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    text_encoder = seeded(lambda: Qwen3VLModel(config).eval())
    # Krea 2's schedule as WanGP computes it (models/krea2/krea2_main.py `_timesteps`): an
    # exponential shift whose mu runs from 0.5 at 256 image tokens to 1.15 at 6400.
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=6400,
        base_shift=0.5,
        max_shift=1.15,
        time_shift_type="exponential",
    )
    return Krea2Pipeline(
        scheduler=scheduler,
        vae=qwen_image_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=krea2_transformer(),
        text_encoder_select_layers=TEXT_LAYERS,
    )


# Diffusers' names back to the original release's (the inverse of diffusers' converter).
_ORIGINAL_PREFIXES = (
    ("img_in.", "first."),
    ("time_embed.linear_1.", "tmlp.0."),
    ("time_embed.linear_2.", "tmlp.2."),
    ("time_mod_proj.", "tproj.1."),
    ("txt_in.norm.weight", "txtmlp.0.scale"),
    ("txt_in.linear_1.", "txtmlp.1."),
    ("txt_in.linear_2.", "txtmlp.3."),
    ("text_fusion.", "txtfusion."),
    ("transformer_blocks.", "blocks."),
    ("final_layer.linear.", "last.linear."),
    ("final_layer.norm.weight", "last.norm.scale"),
    ("final_layer.scale_shift_table", "last.modulation.lin"),
)
_ORIGINAL_PARTS = (
    (".attn.to_q.", ".attn.wq."),
    (".attn.to_k.", ".attn.wk."),
    (".attn.to_v.", ".attn.wv."),
    (".attn.to_out.0.", ".attn.wo."),
    (".attn.to_gate.", ".attn.gate."),
    (".attn.norm_q.weight", ".attn.qknorm.qnorm.scale"),
    (".attn.norm_k.weight", ".attn.qknorm.knorm.scale"),
    (".ff.", ".mlp."),
    (".norm1.weight", ".prenorm.scale"),
    (".norm2.weight", ".postnorm.scale"),
    (".scale_shift_table", ".mod.lin"),
)


def original_name(key: str) -> str:
    """A Krea 2 transformer key in diffusers' names -> the original release's name."""
    name = key
    for new, old in _ORIGINAL_PREFIXES:
        if name.startswith(new):
            name = old + name[len(new) :]
            break
    for new, old in _ORIGINAL_PARTS:
        name = name.replace(new, old)
    return name


def write_krea2_single_file(dest: Path, transformer: Any = None, prefix: str = "") -> Path:
    """A Krea 2 transformer (the tiny one by default) saved as one safetensors file in the original
    release's names (each block's six modulation vectors flattened into one, as the release stores
    them), under `prefix` (ComfyUI's `model.diffusion_model.`, which WanGP strips); returns `dest`."""
    from safetensors.torch import save_file

    state = (transformer if transformer is not None else krea2_transformer()).state_dict()
    out = {}
    for key, tensor in state.items():
        if key.startswith("transformer_blocks.") and key.endswith(".scale_shift_table"):
            tensor = tensor.reshape(-1)
        out[prefix + original_name(key)] = tensor.contiguous()
    save_file(out, str(dest))
    return dest
