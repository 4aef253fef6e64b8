"""Tiny Chroma: FLUX.1's double- and single-stream blocks without their own modulations, driven by
one distilled guidance approximator, conditioned on T5 alone, over FLUX.1's VAE layout, as
diffusers' ChromaPipeline runs it; and its transformer saved in the original key layout of WanGP's
Chroma files (models.chroma_layout reads them back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
from transformers import T5Config, T5EncoderModel

from models.chroma_layout import APPROXIMATOR, chroma_to_diffusers
from models.tiny import flux_vae, seeded, t5_config, t5_tokenizer
from models.tiny_flux import flux1_original

# The approximator's block parts, diffusers -> original (the inverse of models.chroma_layout's).
_APPROXIMATOR_ORIGINAL = ((".linear_1.", ".in_layer."), (".linear_2.", ".out_layer."))


def chroma_transformer(**changes: Any) -> Any:
    """Chroma's transformer in tiny: 1 double and 1 single block, 2 heads of 16, a 2-layer
    approximator 32 wide; 16 input channels (4 latent channels in 2x2 patches), as the tiny FLUX."""
    config: dict[str, Any] = {
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,  # the tiny T5's width
        "axes_dims_rope": (4, 6, 6),  # sums to the head dim
        "approximator_num_channels": 16,
        "approximator_hidden_dim": 32,
        "approximator_layers": 2,
    }
    return seeded(lambda: ChromaTransformer2DModel(**(config | changes)))


def build_chroma() -> Any:
    tokenizer = t5_tokenizer()  # 512 positions: Chroma pads prompts to 512 tokens
    text_encoder = seeded(lambda: T5EncoderModel(T5Config(**t5_config(len(tokenizer)))).eval())
    # lodestones/Chroma1-HD's scheduler as FLUX.1 dev's: a shift from the image size (0.5 at 256
    # tokens to 1.15 at 4096), which WanGP's get_schedule also applies to Chroma.
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        base_shift=0.5,
        max_shift=1.15,
    )
    return ChromaPipeline(
        scheduler=scheduler,
        vae=flux_vae(latent_channels=4),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=chroma_transformer(),
    )


def chroma_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ChromaTransformer2DModel state dict in the original names: BFL's blocks (fused qkv and
    linear1) and the approximator's in_layer/out_layer/scale."""
    approximator = {key: state[key] for key in state if key.startswith(APPROXIMATOR)}
    out = flux1_original({key: value for key, value in state.items() if key not in approximator})
    for key, tensor in approximator.items():
        name = key
        for new, old in _APPROXIMATOR_ORIGINAL:
            name = name.replace(new, old)
        if name.startswith(f"{APPROXIMATOR}norms."):
            name = name.removesuffix(".weight") + ".scale"
        out[name] = tensor
    return out


def write_chroma_single_file(dest: Path, transformer: Any = None, prefix: str = "") -> Path:
    """A Chroma transformer (the tiny one by default) saved as one safetensors file in the original
    names, under `prefix` (ComfyUI's `model.diffusion_model.`); returns `dest`. Checked: the farm's
    converter reads it back to the same tensors."""
    from safetensors.torch import save_file

    model = transformer if transformer is not None else chroma_transformer()
    state = {key: tensor.detach() for key, tensor in model.state_dict().items()}
    original = chroma_original(state)
    back = chroma_to_diffusers(dict(original))
    if back.keys() != state.keys() or not all(torch.equal(back[key], state[key]) for key in state):
        raise RuntimeError("the Chroma names written here do not convert back to the same tensors")
    save_file({prefix + key: tensor.contiguous() for key, tensor in original.items()}, str(dest))
    return dest
