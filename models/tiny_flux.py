"""Tiny FLUX variants and FLUX transformers written in Black Forest Labs' key layout.

FLUX.1 Kontext [dev] is FLUX.1 dev's network and components called with a reference image (its
latents ride beside the noise in one sequence): the tiny one is the tiny FLUX's modules in
FluxKontextPipeline. `write_flux_single_file` saves a FluxTransformer2DModel as WanGP ships its
Flux files (BFL's names, fused qkv), checked against models.flux_layouts, which reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.flux_layouts import flux1_to_diffusers, flux2_to_diffusers
from models.tiny import QWEN_SPECIALS, qwen_tokenizer, seeded, tiny_pipeline

# Qwen3's chat template in its thinking-off form, which Flux2KleinPipeline asks for
# (enable_thinking=False): the prompt as a user turn, then an empty think block.
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
# Klein reads the text encoder's hidden states 9, 18 and 27 (text_encoder_out_layers): the tiny
# Qwen3 needs 27 layers for the same call.
KLEIN_TEXT_LAYERS = 27


def build_kontext() -> Any:
    """FLUX.1 Kontext [dev] in tiny: the tiny FLUX's modules, byte-identical, in its edit pipeline."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import FluxKontextPipeline

    return FluxKontextPipeline(**tiny_pipeline("flux").components)


def build_klein() -> Any:
    """FLUX.2 [klein] in tiny: the step-distilled Flux2KleinPipeline (no guidance embedder, no CFG)
    over a 27-layer, 16-wide Qwen3 whose three read layers (9, 18, 27) make the 48-wide context,
    FLUX.2's VAE layout (8x, 2x2 latent patches behind a batch norm) and a 1+1-block transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    vocab = tokenizer.get_vocab()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=KLEIN_TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=vocab[QWEN_SPECIALS[0]],
        eos_token_id=vocab["<|im_end|>"],
    )
    text_encoder = seeded(lambda: Qwen3ForCausalLM(config).eval())
    transformer = seeded(lambda: flux2_transformer(joint_attention_dim=3 * config.hidden_size))
    vae = seeded(_flux2_vae)
    # FLUX.2's scheduler: Euler over flow sigmas, shifted by the empirical mu the pipeline passes.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


# Mistral Small 3.1's chat layout as Flux2Pipeline sends it: a system turn, then the prompt.
MISTRAL3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}[SYSTEM_PROMPT]"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% else %}[IMG]{% endif %}{% endfor %}[/INST]"
    "{% endif %}{% endfor %}"
)
MISTRAL3_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[IMG]",
    "[IMG_BREAK]",
    "[IMG_END]",
]
# FLUX.2 [dev] reads the text encoder's hidden states 10, 20 and 30.
DEV_TEXT_LAYERS = 30


def build_flux2_dev() -> Any:
    """FLUX.2 [dev] in tiny: Flux2Pipeline with its guidance embedder over a 30-layer, 16-wide
    Mistral 3 (a 1-layer Pixtral vision tower it never runs for text) whose read layers (10, 20, 30)
    make the 48-wide context. The tokenizer is a byte-level BPE with Mistral's chat specials, trained
    on the sample prompts and the pipeline's system message; the real repo's component is a
    PixtralProcessor, which this stack's transformers builds only with torchvision."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
    from tokenizers import pre_tokenizers
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, PreTrainedTokenizerFast

    from models.tiny import PROMPTS, QWEN_SPLIT, byte_level_bpe, train_bpe

    bpe = byte_level_bpe(QWEN_SPLIT, unk_token="<unk>")
    corpus = [*PROMPTS.splitlines(), *SYSTEM_MESSAGE.splitlines()] * 3
    train_bpe(bpe, MISTRAL3_SPECIALS, pre_tokenizers.ByteLevel.alphabet(), corpus)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=MISTRAL3_SPECIALS[4:],
        model_max_length=4096,
    )
    tokenizer.chat_template = MISTRAL3_CHAT_TEMPLATE
    vocab = tokenizer.get_vocab()
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": DEV_TEXT_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 1024,
            "bos_token_id": vocab["<s>"],
            "eos_token_id": vocab["</s>"],
            "pad_token_id": vocab["<pad>"],
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "patch_size": 4,
            "image_size": 64,
        },
        image_token_index=vocab["[IMG]"],
        spatial_merge_size=2,
        vision_feature_layer=-1,
    )
    text_encoder = seeded(lambda: Mistral3ForConditionalGeneration(config).eval())
    transformer = seeded(lambda: flux2_transformer(joint_attention_dim=48, guidance_embeds=True))
    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=seeded(_flux2_vae),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def flux2_transformer(**changes: Any) -> Any:
    """FLUX.2's transformer in tiny (2 heads x 16, RoPE over 4 axes of 4, MLP x3), unseeded."""
    from diffusers import Flux2Transformer2DModel

    config: dict[str, Any] = {
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 48,
        "timestep_guidance_channels": 32,
        "axes_dims_rope": (4, 4, 4, 4),
        "guidance_embeds": False,
    }
    return Flux2Transformer2DModel(**(config | changes))


# Diffusers' FLUX.2 names -> BFL's for tensors that only change name.
_FLUX2_NAMES = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
}
_FLUX2_DOUBLE = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.to_out.0": "img_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "attn.to_add_out": "txt_attn.proj",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj": "linear1",
    "attn.to_out": "linear2",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
}


def flux2_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Flux2Transformer2DModel state dict in BFL's names: qkv fused, RMSNorm weights as `scale`,
    the final norm's modulation as (shift, scale)."""
    out: dict[str, torch.Tensor] = {}
    rest = dict(state)
    for kind in ("weight", "bias"):
        if f"norm_out.linear.{kind}" in rest:
            scale, shift = rest.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
            out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale], dim=0)
    for i in sorted({int(key.split(".")[1]) for key in rest if key.startswith("transformer_blocks.")}):
        for fused, parts in _FUSED.items():
            out[f"double_blocks.{i}.{fused}.weight"] = torch.cat(
                [rest.pop(f"transformer_blocks.{i}.{part}.weight") for part in parts], dim=0
            )
    for key, tensor in rest.items():
        module, kind = key.rsplit(".", 1)
        head, _, tail = module.partition(".")
        if head in ("transformer_blocks", "single_transformer_blocks"):
            index, _, inner = tail.partition(".")
            double = head == "transformer_blocks"
            name = (_FLUX2_DOUBLE if double else _FLUX2_SINGLE)[inner]
            module = f"{'double_blocks' if double else 'single_blocks'}.{index}.{name}"
        else:
            module = _FLUX2_NAMES[module]
        out[f"{module}.{'scale' if module.endswith('_norm') else kind}"] = tensor
    return out


def write_flux2_single_file(dest: Path, transformer: Any) -> Path:
    """`transformer` (a Flux2Transformer2DModel) saved in BFL's layout, as WanGP ships its FLUX.2
    files; checked against diffusers' converter, which reads it back."""
    from safetensors.torch import save_file

    state = {key: tensor.detach() for key, tensor in transformer.state_dict().items()}
    original = flux2_original(state)
    back = flux2_to_diffusers(dict(original))
    if back.keys() != state.keys() or not all(torch.equal(back[key], state[key]) for key in state):
        raise RuntimeError("the BFL names written here do not convert back to the same FLUX.2 tensors")
    save_file({key: tensor.contiguous() for key, tensor in original.items()}, str(dest))
    return dest


# Diffusers' FLUX.1 names -> BFL's, for tensors that only change name ({i}: the block).
_ORIGINAL_NAMES = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
_SINGLE_NAMES = {
    "norm.linear": "modulation.lin",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
    "proj_out": "linear2",
}
# RMSNorm weights are `scale` in BFL's code.
_SCALES = ("norm_q", "norm_k", "norm_added_q", "norm_added_k")
_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


def flux1_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FluxTransformer2DModel state dict in BFL's names: qkv and a single block's linear1 fused,
    the final norm's modulation as (shift, scale). Chroma's blocks are FLUX.1's without modulations
    (no final one either): it is written by the same function (models.tiny_chroma)."""
    rest = dict(state)
    out: dict[str, torch.Tensor] = {}
    shift_scale = {
        kind: rest.pop(f"norm_out.linear.{kind}")
        for kind in ("weight", "bias")
        if f"norm_out.linear.{kind}" in rest
    }
    for kind, tensor in shift_scale.items():
        scale, shift = tensor.chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale], dim=0)
    for prefix, original, fused in (
        ("transformer_blocks", "double_blocks", _FUSED),
        ("single_transformer_blocks", "single_blocks", {"linear1": _LINEAR1}),
    ):
        for i in sorted({int(key.split(".")[1]) for key in rest if key.startswith(prefix + ".")}):
            for name, parts in fused.items():
                for kind in ("weight", "bias"):
                    pieces = [rest.pop(f"{prefix}.{i}.{part}.{kind}") for part in parts]
                    out[f"{original}.{i}.{name}.{kind}"] = torch.cat(pieces, dim=0)
    for key, tensor in rest.items():
        out[_original_name(key)] = tensor
    return out


def _original_name(key: str) -> str:
    module, kind = key.rsplit(".", 1)
    head, _, tail = module.partition(".")
    table, prefix = _ORIGINAL_NAMES, ""
    if head in ("transformer_blocks", "single_transformer_blocks"):
        index, _, module = tail.partition(".")
        original = "double_blocks" if head == "transformer_blocks" else "single_blocks"
        table = _ORIGINAL_NAMES if head == "transformer_blocks" else _SINGLE_NAMES
        prefix = f"{original}.{index}."
    if module.endswith(_SCALES):
        kind = "scale"
    return f"{prefix}{table[module]}.{kind}"


def write_flux_single_file(dest: Path, transformer: Any) -> Path:
    """`transformer` (a FluxTransformer2DModel) saved as one safetensors file in BFL's layout, as
    WanGP ships its Flux files; returns `dest`. Checked: the farm's converter reads it back to the
    same tensors."""
    from safetensors.torch import save_file

    state = {key: tensor.detach() for key, tensor in transformer.state_dict().items()}
    original = flux1_original(state)
    back = flux1_to_diffusers(dict(original))
    if back.keys() != state.keys() or not all(torch.equal(back[key], state[key]) for key in state):
        raise RuntimeError("the BFL names written here do not convert back to the same FLUX tensors")
    save_file({key: tensor.contiguous() for key, tensor in original.items()}, str(dest))
    return dest
