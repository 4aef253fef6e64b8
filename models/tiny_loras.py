"""Tiny random LoRAs for the tiny models of models.tiny, in the key layouts real LoRAs come in.

Each tiny family gets LoRA weights over its attention and MLP layers, low rank, drawn from a fixed
seed, in two layouts of the same weights:
- DIFFUSERS: PEFT's `transformer.<module>.lora_A.weight` / `lora_B.weight`, as diffusers saves them;
- ORIGINAL: the family's own checkpoint names, as trainers and WanGP users share them:
  Wan `diffusion_model.blocks.N.self_attn.q.lora_A.weight` (+ `.alpha`), LTX-Video
  `diffusion_model.transformer_blocks.N.attn1.to_q.lora_A.weight`, Flux kohya
  `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` / `lora_up` / `alpha` (q, k, v fused),
  Qwen-Image kohya `lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight` / `lora_up` / `alpha`,
  HunyuanVideo `diffusion_model.double_blocks.N.img_attn_qkv.lora_A.weight` (q, k, v fused; no alpha).
The two layouts hold the same adaptation (alpha folded into the PEFT weights), so once diffusers has
converted the original one they must render the same frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.tiny import BUILDERS, tiny_hunyuan, tiny_pipeline


class LoraLayout(StrEnum):
    DIFFUSERS = "diffusers"
    ORIGINAL = "original"


@dataclass(frozen=True)
class _Target:
    """One adapted layer of the original checkpoint and the diffusers modules it became; a fused
    layer (Flux's qkv) shares its down matrix and splits its up matrix over them, in order."""

    original: str
    modules: tuple[str, ...]


@dataclass(frozen=True)
class _Style:
    """How a family's original LoRA names its keys."""

    key: Callable[[str, str], str]  # (original layer, "down" | "up" | "alpha") -> key
    alpha: bool  # whether it stores alpha (rank / 2 here, so the scaling is exercised)


def tiny_lora(family: str, layout: LoraLayout, seed: int = 0, rank: int = 4) -> dict[str, torch.Tensor]:
    """A LoRA state dict for the tiny model of `family` (a models.tiny family), the same weights
    whatever the layout for one seed and rank."""
    if family not in _TARGETS:
        raise ValueError(f"no tiny LoRA for family {family!r}; families: {', '.join(_TARGETS)}")
    style = _STYLES[family]
    shapes = _linear_shapes(family)
    generator = torch.Generator().manual_seed(seed)
    # alpha / rank scales the update in the original layout; the PEFT layout folds it into A.
    scale = 0.5 if style.alpha else 1.0
    state: dict[str, torch.Tensor] = {}
    for target in _TARGETS[family](shapes):
        in_features = shapes[target.modules[0]][0]
        outs = [shapes[module][1] for module in target.modules]
        down = torch.randn(rank, in_features, generator=generator)
        up = torch.randn(sum(outs), rank, generator=generator)
        if layout is LoraLayout.ORIGINAL:
            state[style.key(target.original, "down")] = down
            state[style.key(target.original, "up")] = up
            if style.alpha:
                state[style.key(target.original, "alpha")] = torch.tensor(rank * scale)
            continue
        for module, part in zip(target.modules, torch.split(up, outs), strict=True):
            state[f"transformer.{module}.lora_A.weight"] = down * scale
            state[f"transformer.{module}.lora_B.weight"] = part.contiguous()
    return state


def save_tiny_lora(path: Path, family: str, layout: LoraLayout, seed: int = 0, rank: int = 4) -> Path:
    """Write `tiny_lora(...)` as a .safetensors file at `path` (folders created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_lora(family, layout, seed, rank), str(path))
    return path


@cache
def _linear_shapes(family: str) -> dict[str, tuple[int, int]]:
    """(in, out) features of every Linear of the family's tiny transformer, as models.tiny builds it."""
    transformer = (tiny_hunyuan() if family == "hunyuan" else tiny_pipeline(family)).transformer
    return {
        name: (module.in_features, module.out_features)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def _blocks(shapes: dict[str, tuple[int, int]], prefix: str) -> range:
    numbers = {int(name.split(".")[1]) for name in shapes if name.startswith(f"{prefix}.")}
    return range(len(numbers))


def _wan(shapes: dict[str, tuple[int, int]]) -> list[_Target]:
    targets = []
    for i in _blocks(shapes, "blocks"):
        for original, ours in (("self_attn", "attn1"), ("cross_attn", "attn2")):
            for short, module in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0")):
                targets.append(_Target(f"blocks.{i}.{original}.{short}", (f"blocks.{i}.{ours}.{module}",)))
        targets.append(_Target(f"blocks.{i}.ffn.0", (f"blocks.{i}.ffn.net.0.proj",)))
        targets.append(_Target(f"blocks.{i}.ffn.2", (f"blocks.{i}.ffn.net.2",)))
    return targets


def _ltx(shapes: dict[str, tuple[int, int]]) -> list[_Target]:
    # LTX-Video's original checkpoint already uses the diffusers module names.
    modules = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_out.0"]
    modules += ["ff.net.0.proj", "ff.net.2"]
    return [
        _Target(f"transformer_blocks.{i}.{m}", (f"transformer_blocks.{i}.{m}",))
        for i in _blocks(shapes, "transformer_blocks")
        for m in modules
    ]


def _double_stream(i: int, attn: str, mlp: tuple[str, str]) -> list[_Target]:
    """A double-stream block's attention and image MLP, named as the original FLUX and HunyuanVideo
    checkpoints name them: `img_attn{attn}qkv` (FLUX '.', Hunyuan '_'), `img_mlp.{mlp}`."""
    ours = f"transformer_blocks.{i}"
    return [
        _Target(f"double_blocks.{i}.img_attn{attn}qkv", tuple(f"{ours}.attn.to_{x}" for x in "qkv")),
        _Target(f"double_blocks.{i}.img_attn{attn}proj", (f"{ours}.attn.to_out.0",)),
        _Target(f"double_blocks.{i}.txt_attn{attn}qkv", tuple(f"{ours}.attn.add_{x}_proj" for x in "qkv")),
        _Target(f"double_blocks.{i}.txt_attn{attn}proj", (f"{ours}.attn.to_add_out",)),
        _Target(f"double_blocks.{i}.img_mlp.{mlp[0]}", (f"{ours}.ff.net.0.proj",)),
        _Target(f"double_blocks.{i}.img_mlp.{mlp[1]}", (f"{ours}.ff.net.2",)),
    ]


def _flux(shapes: dict[str, tuple[int, int]]) -> list[_Target]:
    targets = []
    for i in _blocks(shapes, "transformer_blocks"):
        targets += _double_stream(i, attn=".", mlp=("0", "2"))
    # Single blocks: only linear2; diffusers splits a kohya linear1 by FLUX.1's full-size widths.
    for i in _blocks(shapes, "single_transformer_blocks"):
        targets.append(_Target(f"single_blocks.{i}.linear2", (f"single_transformer_blocks.{i}.proj_out",)))
    return targets


def _qwen_image(shapes: dict[str, tuple[int, int]]) -> list[_Target]:
    modules = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.to_add_out"]
    modules += ["img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.2"]
    return [
        _Target(f"transformer_blocks.{i}.{m}", (f"transformer_blocks.{i}.{m}",))
        for i in _blocks(shapes, "transformer_blocks")
        for m in modules
    ]


def _hunyuan(shapes: dict[str, tuple[int, int]]) -> list[_Target]:
    targets = []
    for i in _blocks(shapes, "transformer_blocks"):
        ours = f"transformer_blocks.{i}"
        targets += _double_stream(i, attn="_", mlp=("fc1", "fc2"))
        targets += [
            _Target(f"double_blocks.{i}.txt_mlp.fc1", (f"{ours}.ff_context.net.0.proj",)),
            _Target(f"double_blocks.{i}.txt_mlp.fc2", (f"{ours}.ff_context.net.2",)),
            _Target(f"double_blocks.{i}.img_mod.linear", (f"{ours}.norm1.linear",)),
        ]
    # Single blocks: linear2 and the modulation; diffusers splits a linear1 by the real model's width
    # (3072), which the tiny one does not have.
    for i in _blocks(shapes, "single_transformer_blocks"):
        ours = f"single_transformer_blocks.{i}"
        targets.append(_Target(f"single_blocks.{i}.linear2", (f"{ours}.proj_out",)))
        targets.append(_Target(f"single_blocks.{i}.modulation.linear", (f"{ours}.norm.linear",)))
    return targets


_TARGETS: dict[str, Callable[[dict[str, tuple[int, int]]], list[_Target]]] = {
    "wan": _wan,
    "ltx": _ltx,
    "flux": _flux,
    "qwen-image": _qwen_image,
    "hunyuan": _hunyuan,
}

_A_B = {"down": "lora_A.weight", "up": "lora_B.weight", "alpha": "alpha"}
_KOHYA = {"down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}

_STYLES = {
    "wan": _Style(lambda layer, part: f"diffusion_model.{layer}.{_A_B[part]}", alpha=True),
    "ltx": _Style(lambda layer, part: f"diffusion_model.{layer}.{_A_B[part]}", alpha=False),
    "flux": _Style(lambda layer, part: f"lora_unet_{layer.replace('.', '_')}.{_KOHYA[part]}", alpha=True),
    "qwen-image": _Style(
        lambda layer, part: f"lora_unet_{layer.replace('.', '_')}.{_KOHYA[part]}", alpha=True
    ),
    # diffusers' HunyuanVideo converter reads lora_A / lora_B only; an alpha key would stop it.
    "hunyuan": _Style(lambda layer, part: f"diffusion_model.{layer}.{_A_B[part]}", alpha=False),
}

# The families whose tiny model is a catalogue preset; HunyuanVideo's (models.tiny.tiny_hunyuan) has
# none, so its LoRAs are asked for by name.
FAMILIES = tuple(family for family in _TARGETS if family in BUILDERS)

__all__ = ["FAMILIES", "LoraLayout", "save_tiny_lora", "tiny_lora"]
