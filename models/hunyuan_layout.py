"""HunyuanVideo's original key layout (WanGP's transformer files) and diffusers' names for it.

WanGP (deepbeepmeep/Wan2GP 8681e9f7, models/hyvideo/modules/models.py HYVideoDiffusionTransformer
with its 'HYVideo-T/2-cfgdistill' and 'HYVideo-T/2' configs, pre_split_qkv off) loads its files
into its own modules, so a file holds fused q/k/v in the double blocks (`img_attn_qkv`,
`txt_attn_qkv`) and the token refiner (`self_attn_qkv`), and q/k/v plus the MLP input in one
`linear1` per single block; WanGP's handler splits them after loading (get_linear_split_map).
diffusers' own converter (convert_hunyuan_video_transformer_to_diffusers) assumes the 13B width
(3072), so a smaller model needs this one, which reads the width from the tensors.

Every split is along the output rows, and the final modulation's (shift, scale) halves are swapped
along them too: so an int8 quanto weight (its `weight._data` rows and per-row `weight._scale`) is
converted by the same cuts as a float one, as mmgp splits WanGP's quantized modules.
"""

from __future__ import annotations

from typing import Any

# A key is a module's name and one of these fields (quanto's pieces of a quantized weight first).
_FIELDS = ("weight._data", "weight._scale", "input_scale", "output_scale", "weight", "bias")
_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
# Whole modules: WanGP's name -> diffusers' name(s), the output rows cut in order among them.
_TOP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("img_in.proj", ("x_embedder.proj",)),
    ("txt_in.input_embedder", ("context_embedder.proj_in",)),
    ("txt_in.t_embedder.mlp.0", ("context_embedder.time_text_embed.timestep_embedder.linear_1",)),
    ("txt_in.t_embedder.mlp.2", ("context_embedder.time_text_embed.timestep_embedder.linear_2",)),
    ("txt_in.c_embedder.linear_1", ("context_embedder.time_text_embed.text_embedder.linear_1",)),
    ("txt_in.c_embedder.linear_2", ("context_embedder.time_text_embed.text_embedder.linear_2",)),
    ("time_in.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
    ("time_in.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
    ("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
    ("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
    ("guidance_in.mlp.0", ("time_text_embed.guidance_embedder.linear_1",)),
    ("guidance_in.mlp.2", ("time_text_embed.guidance_embedder.linear_2",)),
    ("final_layer.linear", ("proj_out",)),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",)),
)
# WanGP's final layer modulates with (shift, scale); diffusers' norm_out reads (scale, shift).
_SWAPPED = "final_layer.adaLN_modulation.1"
_DOUBLE = (
    ("img_mod.linear", ("norm1.linear",)),
    ("txt_mod.linear", ("norm1_context.linear",)),
    ("img_attn_qkv", _QKV),
    ("img_attn_q_norm", ("attn.norm_q",)),
    ("img_attn_k_norm", ("attn.norm_k",)),
    ("img_attn_proj", ("attn.to_out.0",)),
    ("txt_attn_qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    ("txt_attn_q_norm", ("attn.norm_added_q",)),
    ("txt_attn_k_norm", ("attn.norm_added_k",)),
    ("txt_attn_proj", ("attn.to_add_out",)),
    ("img_mlp.fc1", ("ff.net.0.proj",)),
    ("img_mlp.fc2", ("ff.net.2",)),
    ("txt_mlp.fc1", ("ff_context.net.0.proj",)),
    ("txt_mlp.fc2", ("ff_context.net.2",)),
)
# `linear1` is q, k, v (the width each) then the MLP input (the rest).
_LINEAR1 = "linear1"
_SINGLE = (
    (_LINEAR1, (*_QKV, "proj_mlp")),
    ("linear2", ("proj_out",)),
    ("q_norm", ("attn.norm_q",)),
    ("k_norm", ("attn.norm_k",)),
    ("modulation.linear", ("norm.linear",)),
)
_REFINER = (
    ("norm1", ("norm1",)),
    ("norm2", ("norm2",)),
    ("self_attn_qkv", _QKV),
    ("self_attn_proj", ("attn.to_out.0",)),
    ("mlp.fc1", ("ff.net.0.proj",)),
    ("mlp.fc2", ("ff.net.2",)),
    ("adaLN_modulation.1", ("norm_out.linear",)),
)
# Lists of blocks: WanGP's prefix, diffusers' prefix, the modules of a block.
_BLOCKS = (
    ("double_blocks.", "transformer_blocks.", _DOUBLE),
    ("single_blocks.", "single_transformer_blocks.", _SINGLE),
    ("txt_in.individual_token_refiner.blocks.", "context_embedder.token_refiner.refiner_blocks.", _REFINER),
)


class UnknownKey(KeyError):
    """A key of neither layout."""


def hunyuan_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """WanGP's HunyuanVideo state dict (float, or int8 quanto pieces) in diffusers' names, taken
    out of `state` as it goes; a key it does not know is kept as it is (the caller's key check
    names it). Every tensor is a fresh copy: one read from a file may sit at an offset whose
    alignment sends the CPU's kernels down a path that rounds differently."""
    out: dict[str, Any] = {}
    for module, fields in _grouped(state).items():
        targets = _targets(module)
        if targets is None:
            out.update({_key(module, field): value.clone() for field, value in fields.items()})
            continue
        for field, value in fields.items():
            if module == _SWAPPED and value.dim() > 0:
                value = _swap_halves(value)
            for target, part in zip(targets, _cut(module, value, fields, len(targets)), strict=True):
                out[_key(target, field)] = part.clone()  # storage of its own, not a view
    return out


def hunyuan_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers HunyuanVideoTransformer3DModel state dict (float) in WanGP's names, the layout
    of its single files; UnknownKey for a key this mapping does not cover."""
    import torch

    parts: dict[str, dict[int, Any]] = {}
    for module, fields in _grouped(dict(state)).items():
        found = _source(module)
        if found is None:
            raise UnknownKey(module)
        original, index = found
        for field, value in fields.items():
            parts.setdefault(_key(original, field), {})[index] = value
    out = {}
    for key, pieces in parts.items():
        value = torch.cat([pieces[index] for index in sorted(pieces)], dim=0)
        out[key] = _swap_halves(value) if key.startswith(f"{_SWAPPED}.") else value
    return out


def _grouped(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{module: {field: tensor}}, popped from `state`; a key with no known field is its own module."""
    groups: dict[str, dict[str, Any]] = {}
    for key in list(state):
        field = next((name for name in _FIELDS if key.endswith(f".{name}")), "")
        module = key.removesuffix(f".{field}") if field else key
        groups.setdefault(module, {})[field] = state.pop(key)
    return groups


def _key(module: str, field: str) -> str:
    return f"{module}.{field}" if field else module


def _targets(module: str) -> tuple[str, ...] | None:
    """diffusers' module(s) for WanGP's `module`, or None when it is not of this layout."""
    for original, targets in _TOP:
        if module == original:
            return targets
    for source, destination, modules in _BLOCKS:
        inside = _in_block(module, source)
        if inside is None:
            continue
        index, rest = inside
        for original, targets in modules:
            if rest == original:
                return tuple(f"{destination}{index}.{target}" for target in targets)
    return None


def _source(module: str) -> tuple[str, int] | None:
    """WanGP's module holding diffusers' `module`, and the place of its rows among that module's."""
    for original, targets in _TOP:
        if module in targets:
            return original, targets.index(module)
    for source, destination, modules in _BLOCKS:
        inside = _in_block(module, destination)
        if inside is None:
            continue
        index, rest = inside
        for original, targets in modules:
            if rest in targets:
                return f"{source}{index}.{original}", targets.index(rest)
    return None


def _cut(module: str, value: Any, fields: dict[str, Any], count: int) -> list[Any]:
    """`value` (one field of a module) cut along its rows into the module's `count` pieces; a
    per-module scalar (quanto's input/output scale) goes to each piece whole."""
    import torch

    if count == 1:
        return [value]
    if value.dim() == 0:
        return [value] * count
    rows = value.shape[0]
    if module.endswith(f".{_LINEAR1}"):
        # linear1: q, k and v are each as wide as the block's input (its weight's columns).
        width = (fields["weight"] if "weight" in fields else fields["weight._data"]).shape[1]
        sizes = [width, width, width, rows - 3 * width]
    else:
        sizes = [rows // count] * count
    return list(torch.split(value, sizes, dim=0))


def _in_block(key: str, prefix: str) -> tuple[str, str] | None:
    """(block index, the rest of the key) for a key under `prefix`N., else None."""
    if not key.startswith(prefix):
        return None
    index, _, rest = key.removeprefix(prefix).partition(".")
    return (index, rest) if index.isdigit() else None


def _swap_halves(value: Any) -> Any:
    import torch

    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)
