"""HunyuanVideo LoRAs in the original key layout, made readable by diffusers' converter.

WanGP's HunyuanVideo reads LoRAs named after its own modules (`diffusion_model.double_blocks.0.
img_attn_qkv...`), with `lora_A` / `lora_B` or `lora_down` / `lora_up` and an optional `alpha`.
diffusers' `_convert_hunyuan_video_lora_to_diffusers` reads only `lora_A` / `lora_B` without alpha
(it fails on the others), and splits the down matrix of two layers as if it were a weight: the
final layer's modulation (its shift and scale halves swap) and the token refiner's fused qkv. Those
are put in diffusers' terms here first, so the converter renders what WanGP renders.
"""

from __future__ import annotations

import torch

_PREFIXES = ("diffusion_model.", "transformer.")
_KOHYA = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}
_FINAL_MODULATION = "final_layer.adaLN_modulation.1"
_REFINER = "txt_in.individual_token_refiner.blocks."


def readable_hunyuan_lora(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with lora_A / lora_B names, alpha folded into lora_A, and the final modulation and
    refiner qkv layers already in diffusers' names; other keys as they were."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        layer, part = _split(key)
        if part is None:
            kept[key] = value
        else:
            layers.setdefault(layer, {})[part] = value
    for layer, parts in layers.items():
        if "lora_A.weight" not in parts or "lora_B.weight" not in parts:
            kept.update({f"{layer}.{part}": value for part, value in parts.items()})
            continue
        down, up = parts["lora_A.weight"], parts["lora_B.weight"]
        if "alpha" in parts:  # PEFT's scaling alpha / rank, carried by the down matrix
            down = down * (float(parts["alpha"]) / down.shape[0])
        kept.update(_renamed(layer, down, up))
    return kept


def _split(key: str) -> tuple[str, str | None]:
    """`<layer>.lora_down.weight` -> (`<layer>`, `lora_A.weight`); a key of no LoRA matrix -> (key, None)."""
    for suffix in ("lora_A.weight", "lora_B.weight", *_KOHYA, "alpha"):
        if key.endswith(f".{suffix}"):
            return key.removesuffix(f".{suffix}"), _KOHYA.get(suffix, suffix)
    return key, None


def _renamed(layer: str, down: torch.Tensor, up: torch.Tensor) -> dict[str, torch.Tensor]:
    name = layer
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    if name == _FINAL_MODULATION:
        # The original layer emits (shift, scale); diffusers' norm_out emits (scale, shift).
        shift, scale = up.chunk(2, dim=0)
        return {
            "transformer.norm_out.linear.lora_A.weight": down,
            "transformer.norm_out.linear.lora_B.weight": torch.cat([scale, shift], dim=0),
        }
    if name.startswith(_REFINER) and name.endswith(".self_attn_qkv"):
        block = name.removeprefix(_REFINER).removesuffix(".self_attn_qkv")
        ours = f"transformer.context_embedder.token_refiner.refiner_blocks.{block}.attn"
        renamed = {}
        for projection, part in zip("qkv", up.chunk(3, dim=0), strict=True):
            renamed[f"{ours}.to_{projection}.lora_A.weight"] = down
            renamed[f"{ours}.to_{projection}.lora_B.weight"] = part
        return renamed
    return {f"{layer}.lora_A.weight": down, f"{layer}.lora_B.weight": up}


__all__ = ["readable_hunyuan_lora"]
