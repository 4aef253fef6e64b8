"""HunyuanVideo 1.5's original key layout (WanGP's transformer files) and diffusers' names for it.

diffusers 0.42 has no single-file mapping for HunyuanVideo15Transformer3DModel, so the names are
mapped here, read from WanGP's model code (deepbeepmeep/Wan2GP 8681e9f7, models/hyvideo/modules:
models.py HYVideoDiffusionTransformer with its 'HYVideo-1_5' config, pre-split q/k/v in the double
blocks; token_refiner.py, embed_layers.py, mlp_layers.py, modulate_layers.py for the submodules)
and checked against diffusers' class. Two entries are tensors, not names: the token refiner's
attention keeps q, k and v in one `self_attn_qkv` (diffusers: to_q, to_k, to_v), and the final
layer's modulation is (shift, scale) where diffusers' norm_out reads (scale, shift).
"""

from __future__ import annotations

from typing import Any

# Whole-key prefixes: WanGP's name -> diffusers' name, longest first where one extends another.
_PREFIXES = (
    ("time_in.mlp.0.", "time_embed.timestep_embedder.linear_1."),
    ("time_in.mlp.2.", "time_embed.timestep_embedder.linear_2."),
    ("txt_in.t_embedder.mlp.0.", "context_embedder.time_text_embed.timestep_embedder.linear_1."),
    ("txt_in.t_embedder.mlp.2.", "context_embedder.time_text_embed.timestep_embedder.linear_2."),
    ("txt_in.c_embedder.", "context_embedder.time_text_embed.text_embedder."),
    ("txt_in.input_embedder.", "context_embedder.proj_in."),
    ("byt5_in.layernorm.", "context_embedder_2.norm."),
    ("byt5_in.fc1.", "context_embedder_2.linear_1."),
    ("byt5_in.fc2.", "context_embedder_2.linear_2."),
    ("byt5_in.fc3.", "context_embedder_2.linear_3."),
    ("vision_in.proj.0.", "image_embedder.norm_in."),
    ("vision_in.proj.1.", "image_embedder.linear_1."),
    ("vision_in.proj.3.", "image_embedder.linear_2."),
    ("vision_in.proj.4.", "image_embedder.norm_out."),
    ("img_in.proj.", "x_embedder.proj."),
    ("cond_type_embedding.", "cond_type_embed."),
    ("final_layer.linear.", "proj_out."),
)
_FINAL_MODULATION = ("final_layer.adaLN_modulation.1.", "norm_out.linear.")
# Blocks: the list prefix, then each module's name inside a block.
_DOUBLE = ("double_blocks.", "transformer_blocks.")
_DOUBLE_MODULES = (
    ("img_mod.linear.", "norm1.linear."),
    ("txt_mod.linear.", "norm1_context.linear."),
    ("img_attn_q_norm.", "attn.norm_q."),
    ("img_attn_k_norm.", "attn.norm_k."),
    ("img_attn_q.", "attn.to_q."),
    ("img_attn_k.", "attn.to_k."),
    ("img_attn_v.", "attn.to_v."),
    ("img_attn_proj.", "attn.to_out.0."),
    ("txt_attn_q_norm.", "attn.norm_added_q."),
    ("txt_attn_k_norm.", "attn.norm_added_k."),
    ("txt_attn_q.", "attn.add_q_proj."),
    ("txt_attn_k.", "attn.add_k_proj."),
    ("txt_attn_v.", "attn.add_v_proj."),
    ("txt_attn_proj.", "attn.to_add_out."),
    ("img_mlp.fc1.", "ff.net.0.proj."),
    ("img_mlp.fc2.", "ff.net.2."),
    ("txt_mlp.fc1.", "ff_context.net.0.proj."),
    ("txt_mlp.fc2.", "ff_context.net.2."),
)
_REFINER = ("txt_in.individual_token_refiner.blocks.", "context_embedder.token_refiner.refiner_blocks.")
_REFINER_MODULES = (
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
    ("self_attn_proj.", "attn.to_out.0."),
    ("mlp.fc1.", "ff.net.0.proj."),
    ("mlp.fc2.", "ff.net.2."),
    ("adaLN_modulation.1.", "norm_out.linear."),
)
_FUSED_QKV = "self_attn_qkv."
_SPLIT_QKV = ("attn.to_q.", "attn.to_k.", "attn.to_v.")


class UnknownKey(KeyError):
    """A key of neither layout."""


def hunyuan15_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """WanGP's HunyuanVideo 1.5 state dict in diffusers' names, taken out of `state` (emptied as
    it goes, so a checkpoint is held once); a key it does not know is kept as it is (the caller's
    key check names it). Every tensor is a fresh copy: those read from a file may sit at offsets
    whose alignment sends the CPU's kernels down another path, which rounds differently from the
    same weights loaded by from_pretrained."""
    out: dict[str, Any] = {}
    for key in list(state):
        value = state.pop(key).clone()
        block = _in_block(key, _REFINER[0])
        if block is not None and block[1].startswith(_FUSED_QKV):
            prefix = f"{_REFINER[1]}{block[0]}."
            suffix = block[1].removeprefix(_FUSED_QKV)
            for name, part in zip(_SPLIT_QKV, value.chunk(3, dim=0), strict=True):
                out[prefix + name + suffix] = part.clone()  # storage of its own, not a view
        elif key.startswith(_FINAL_MODULATION[0]):
            out[_FINAL_MODULATION[1] + key.removeprefix(_FINAL_MODULATION[0])] = _swap_halves(value)
        else:
            out[_renamed(key, to_diffusers=True) or key] = value
    return out


def hunyuan15_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers HunyuanVideo15Transformer3DModel state dict in WanGP's names (its single files'
    layout); UnknownKey for a key this mapping does not cover."""
    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        block = _in_block(key, _REFINER[1])
        part = next((name for name in _SPLIT_QKV if block and block[1].startswith(name)), None)
        if block is not None and part is not None:
            target = f"{_REFINER[0]}{block[0]}.{_FUSED_QKV}{block[1].removeprefix(part)}"
            fused.setdefault(target, {})[part] = value
        elif key.startswith(_FINAL_MODULATION[1]):
            out[_FINAL_MODULATION[0] + key.removeprefix(_FINAL_MODULATION[1])] = _swap_halves(value)
        elif (name := _renamed(key, to_diffusers=False)) is not None:
            out[name] = value
        else:
            raise UnknownKey(key)
    for target, parts in fused.items():
        out[target] = _cat([parts[name] for name in _SPLIT_QKV])
    return out


def _renamed(key: str, to_diffusers: bool) -> str | None:
    src, dst = (0, 1) if to_diffusers else (1, 0)
    for pair in _PREFIXES:
        if key.startswith(pair[src]):
            return pair[dst] + key.removeprefix(pair[src])
    for blocks, modules in ((_DOUBLE, _DOUBLE_MODULES), (_REFINER, _REFINER_MODULES)):
        inside = _in_block(key, blocks[src])
        if inside is None:
            continue
        index, rest = inside
        for pair in modules:
            if rest.startswith(pair[src]):
                return f"{blocks[dst]}{index}.{pair[dst]}{rest.removeprefix(pair[src])}"
    return None


def _in_block(key: str, prefix: str) -> tuple[str, str] | None:
    """(block index, the rest of the key) for a key under `prefix`N., else None."""
    if not key.startswith(prefix):
        return None
    index, _, rest = key.removeprefix(prefix).partition(".")
    return (index, rest) if index.isdigit() else None


def _swap_halves(value: Any) -> Any:
    first, second = value.chunk(2, dim=0)
    return _cat([second, first])


def _cat(parts: list[Any]) -> Any:
    import torch

    return torch.cat(parts, dim=0)
