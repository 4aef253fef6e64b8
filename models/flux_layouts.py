"""The original key layouts of FLUX.1 and FLUX.2 transformers (Black Forest Labs' code, the layout
of WanGP's Flux model files) converted to diffusers' names.

FLUX.1: diffusers' own converter (`convert_flux_transformer_checkpoint_to_diffusers`) fixes the
width at 3072 when it splits a single block's fused `linear1` into q, k, v and the MLP, so it
cannot read a narrower network; the converter here follows the same mapping with the width read
from the file (`linear2`'s rows). FLUX.2: diffusers' converter has no fixed width and is used as is.
Both split fused qkv tensors, so they convert tensors, not names alone.
"""

from __future__ import annotations

from typing import Any

# Black Forest Labs' prefix of a transformer saved inside a whole-model checkpoint.
_PREFIX = "model.diffusion_model."
# The alignment (bytes) of the storage torch allocates, which its CPU kernels assume for speed.
_ALIGNMENT = 64
# FLUX.1's MLP is 4 x the width (mlp_ratio in BFL's FluxParams and diffusers' converter).
_MLP_RATIO = 4
# Original names -> diffusers' for the tensors that only change name (block index as {i}).
_FLUX1_RENAMES = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
    "double_blocks.{i}.img_mod.lin": "transformer_blocks.{i}.norm1.linear",
    "double_blocks.{i}.txt_mod.lin": "transformer_blocks.{i}.norm1_context.linear",
    "double_blocks.{i}.img_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_q",
    "double_blocks.{i}.img_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_k",
    "double_blocks.{i}.txt_attn.norm.query_norm": "transformer_blocks.{i}.attn.norm_added_q",
    "double_blocks.{i}.txt_attn.norm.key_norm": "transformer_blocks.{i}.attn.norm_added_k",
    "double_blocks.{i}.img_mlp.0": "transformer_blocks.{i}.ff.net.0.proj",
    "double_blocks.{i}.img_mlp.2": "transformer_blocks.{i}.ff.net.2",
    "double_blocks.{i}.txt_mlp.0": "transformer_blocks.{i}.ff_context.net.0.proj",
    "double_blocks.{i}.txt_mlp.2": "transformer_blocks.{i}.ff_context.net.2",
    "double_blocks.{i}.img_attn.proj": "transformer_blocks.{i}.attn.to_out.0",
    "double_blocks.{i}.txt_attn.proj": "transformer_blocks.{i}.attn.to_add_out",
    "single_blocks.{i}.modulation.lin": "single_transformer_blocks.{i}.norm.linear",
    "single_blocks.{i}.norm.query_norm": "single_transformer_blocks.{i}.attn.norm_q",
    "single_blocks.{i}.norm.key_norm": "single_transformer_blocks.{i}.attn.norm_k",
    "single_blocks.{i}.linear2": "single_transformer_blocks.{i}.proj_out",
}
# Fused projections: original module -> the diffusers modules its rows are split into, in order.
_FLUX1_FUSED_QKV = {
    "double_blocks.{i}.img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "double_blocks.{i}.txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_FLUX1_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
# The final norm's modulation is (shift, scale) in BFL's code and (scale, shift) in diffusers'.
_FINAL_MODULATION = ("final_layer.adaLN_modulation.1", "norm_out.linear")


def flux1_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A FLUX.1 transformer state dict in BFL's names (`double_blocks.N.img_attn.qkv`, ...) as
    diffusers' FluxTransformer2DModel names it; a key it does not know is kept as given, so that the
    caller's key check names it. `state` is emptied."""
    import torch

    # Popped from the caller's dict, so that each original is freed once converted.
    rest = {key.removeprefix(_PREFIX): state.pop(key) for key in list(state)}
    out: dict[str, Any] = {}
    blocks = {
        "double_blocks": _indices(rest, "double_blocks"),
        "single_blocks": _indices(rest, "single_blocks"),
    }
    for original, new in _FLUX1_RENAMES.items():
        for i in blocks.get(original.split(".", 1)[0], [0]):
            for kind in ("weight", "bias", "scale"):
                key = f"{original.format(i=i)}.{kind}"
                if key in rest:
                    out[f"{new.format(i=i)}.{'weight' if kind == 'scale' else kind}"] = rest.pop(key)
    for i in blocks["double_blocks"]:
        for fused, parts in _FLUX1_FUSED_QKV.items():
            for kind in ("weight", "bias"):
                key = f"{fused.format(i=i)}.{kind}"
                if key in rest:
                    for part, tensor in zip(parts, torch.chunk(rest.pop(key), 3, dim=0), strict=True):
                        out[f"transformer_blocks.{i}.{part}.{kind}"] = tensor
    for i in blocks["single_blocks"]:
        # The block's width: the rows of its output projection (linear2), already renamed above.
        out_proj = out.get(f"single_transformer_blocks.{i}.proj_out.weight")
        if out_proj is None:
            continue
        width = out_proj.shape[0]
        for kind in ("weight", "bias"):
            key = f"single_blocks.{i}.linear1.{kind}"
            if key in rest:
                sizes = [width, width, width, _MLP_RATIO * width]
                for part, tensor in zip(
                    _FLUX1_LINEAR1, torch.split(rest.pop(key), sizes, dim=0), strict=True
                ):
                    out[f"single_transformer_blocks.{i}.{part}.{kind}"] = tensor
    original, new = _FINAL_MODULATION
    for kind in ("weight", "bias"):
        key = f"{original}.{kind}"
        if key in rest:
            shift, scale = rest.pop(key).chunk(2, dim=0)
            out[f"{new}.{kind}"] = torch.cat([scale, shift], dim=0)
    return _owning(out | rest)


def flux2_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A FLUX.2 transformer state dict in BFL's names as diffusers' Flux2Transformer2DModel names
    it, by diffusers' own converter; `state` is emptied."""
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    renamed = {key.removeprefix(_PREFIX): state.pop(key) for key in list(state)}
    return _owning(dict(convert_flux2_transformer_checkpoint_to_diffusers(renamed)))


def _owning(state: dict[str, Any]) -> dict[str, Any]:
    # A piece split from a fused tensor is a view into its storage, and safetensors' tensors may
    # start off a 64-byte boundary: the CPU kernels then take other paths, and frames come out a
    # rounding apart from the same weights loaded from a folder. Such tensors get aligned storage of
    # their own, popped one at a time so that the originals are freed as it goes.
    owned = {}
    for key in list(state):
        tensor = state.pop(key)
        view = tensor.untyped_storage().nbytes() != tensor.nbytes
        owned[key] = tensor.clone() if view or tensor.data_ptr() % _ALIGNMENT else tensor
    return owned


def _indices(state: dict[str, Any], prefix: str) -> list[int]:
    return sorted({int(key.split(".")[1]) for key in state if key.startswith(prefix + ".")})
