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

from models.flux_layouts import flux1_to_diffusers
from models.tiny import tiny_pipeline


def build_kontext() -> Any:
    """FLUX.1 Kontext [dev] in tiny: the tiny FLUX's modules, byte-identical, in its edit pipeline."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import FluxKontextPipeline

    return FluxKontextPipeline(**tiny_pipeline("flux").components)


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
    the final norm's modulation as (shift, scale)."""
    rest = dict(state)
    out: dict[str, torch.Tensor] = {}
    shift_scale = {kind: rest.pop(f"norm_out.linear.{kind}") for kind in ("weight", "bias")}
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
