"""Tiny Z-Image: the single-stream DiT over FLUX's 16-channel VAE, conditioned on a Qwen3 text
encoder read at its second-last layer, as diffusers' ZImagePipeline runs it; and its transformer
saved as a WanGP file.

WanGP's Z-Image files (models/z_image/z_image_transformer2d.py at Wan2GP 8681e9f7) hold diffusers'
module names; `write_z_image_single_file(..., original=True)` writes the original release's names
instead (x_embedder, final_layer, attention.out, q_norm/k_norm), which WanGP and diffusers rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from models.qwen_layouts import COMFY_PREFIX
from models.tiny import QWEN_SPECIALS, flux_vae, qwen_tokenizer, seeded

# Qwen3's chat template as ZImagePipeline renders a prompt (one user turn, the assistant's turn
# opened, thinking on: no empty <think> block).
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_PROMPTS = [
    "a cat dancing in the rain, cinematic lighting",
    "a red fox running through a snowy forest at dawn",
    "a bowl of fruit on a wooden table, soft light",
    "user assistant",
]


def z_image_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen's tiny BPE with Qwen3's chat template; ZImagePipeline pads prompts to 512 tokens."""
    tokenizer = qwen_tokenizer(_PROMPTS * 3)
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    return tokenizer


def z_image_transformer(**changes: Any) -> Any:
    """Z-Image's DiT in tiny: 2 main layers and one refiner layer per stream, 2 heads of 16."""
    config: dict[str, Any] = {
        "all_patch_size": (2,),
        "all_f_patch_size": (1,),
        "in_channels": 16,
        "dim": 32,
        "n_layers": 2,
        "n_refiner_layers": 1,
        "n_heads": 2,
        "n_kv_heads": 2,
        "cap_feat_dim": 32,
        "axes_dims": [4, 6, 6],  # sums to the head dim
        "axes_lens": [1536, 512, 512],
    }
    return seeded(lambda: ZImageTransformer2DModel(**(config | changes)))


def build_z_image() -> Any:
    tokenizer = z_image_tokenizer()
    vocab = tokenizer.get_vocab()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,  # the pipeline reads hidden_states[-2]: the second layer's output
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=vocab[QWEN_SPECIALS[0]],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab[QWEN_SPECIALS[0]],
    )
    text_encoder = seeded(lambda: Qwen3Model(config).eval())
    # Tongyi-MAI/Z-Image-Turbo's scheduler: Euler with a fixed shift of 3.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False
    )
    return ZImagePipeline(
        scheduler=scheduler,
        # FLUX.1's VAE layout (16 latent channels, 8x), which Z-Image decodes with.
        vae=flux_vae(latent_channels=16),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=z_image_transformer(),
    )


# Diffusers' names back to the original release's (the inverse of its converter's renames).
_ORIGINAL_RENAMES = (
    ("all_final_layer.2-1.", "final_layer."),
    ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def write_z_image_single_file(dest: Path, transformer: Any = None, original: bool = False) -> Path:
    """A Z-Image transformer (the tiny one by default) saved as one safetensors file: in WanGP's
    names, or with `original` in the original release's names under ComfyUI's prefix; returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    state = (transformer if transformer is not None else z_image_transformer()).state_dict()
    names = {key: key for key in state}
    if original:
        for key in state:
            name = key
            for new, old in _ORIGINAL_RENAMES:
                name = name.replace(new, old)
            names[key] = COMFY_PREFIX + name
    # Checked against the loader's own layout: each name must read back as its diffusers name.
    if diffusers_names(list(names.values()), "ZImageTransformer2DModel") != names:
        raise RuntimeError("the Z-Image names written here do not read back as diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest
