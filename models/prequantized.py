"""WanGP's prequantized transformer files (GGUF, NVFP4, scaled FP8, bitsandbytes NF4), dequantized at load.

WanGP (deepbeepmeep/Wan2GP, commit 8681e9f7, shared/qtypes/{gguf,nvfp4,scaled_fp8,bnb_nf4}.py) keeps
such weights quantized and, where no CUDA kernel for the format is available, runs each linear layer
as a plain linear over the weight dequantized into the compute dtype. Dequantizing every weight once
at load, in the same order of operations, gives the very weights that fallback computes with: the
farm renders what WanGP renders on a card without those kernels. On a card with them (sm120 NVFP4,
fp8 matmuls on sm89+, bitsandbytes, llama.cpp's GGUF kernels) WanGP also quantizes the activations,
a difference of the format's rounding that the farm does not reproduce (docs/settings.md says so).
The state comes back in the file's own key layout, so each family's converter (models.single_file
LAYOUTS) reads it as it reads a bf16 file; memory is that of the dequantized weights (2 bytes a
parameter in bf16/fp16), which a profile never quantizes again.

Public API:
- `Kind`, `kind_of_name(filename)`: the format a file name announces (the dry run has no file).
- `kind_of_file(path)`: the format a file holds, read from its header.
- `dequantized_state(path, dtype)`: its tensors, dequantized, in its original names;
  `Unreadable` names what cannot be honoured (nunchaku files, double-quantized NF4, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a file is read: model definitions are read without it
    import torch


class Kind(StrEnum):
    PLAIN = "plain"
    GGUF = "gguf"
    NVFP4 = "nvfp4"
    FP8 = "fp8"
    NF4 = "nf4"


class Unreadable(ValueError):
    """A prequantized file whose weights cannot be dequantized as WanGP would use them."""


# Name tokens WanGP's files carry for each format (the first that matches wins: "nvfp4" holds "fp4").
_NAME_TOKENS: tuple[tuple[str, Kind], ...] = (
    (".gguf", Kind.GGUF),
    ("nvfp4", Kind.NVFP4),
    ("nf4", Kind.NF4),
    ("fp8", Kind.FP8),
    ("float8", Kind.FP8),
)
_NF4_STATE = ".weight.quant_state.bitsandbytes__nf4"
_GGUF_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_GGUF_ORIG_SHAPE = "comfy.gguf.orig_shape."  # ComfyUI-GGUF records reshaped tensors' true shapes here
# Tensors beside a quantized weight that only describe it: consumed by its dequantization.
_NVFP4_PARTS = (
    *("weight_scale", "weight_scale_2", "input_scale", "input_global_scale", "alpha"),
    *("input_absmax", "weight_global_scale", "pre_quant_scale", "output_scale", "comfy_quant"),
)
_FP8_PARTS = ("scale_weight", "weight_scale", "input_scale", "output_scale", "comfy_quant")
_NF4_PARTS = ("weight.absmax", "weight.quant_map", _NF4_STATE.removeprefix("."))
# e2m1 codes 0-15 (sign bit 3): WanGP's _FP4_LUT_BASE.
_FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
_NVFP4_BLOCK = 16


def kind_of_name(filename: str) -> Kind:
    """The format `filename` announces by WanGP's naming, PLAIN when none."""
    name = filename.lower()
    return next((kind for token, kind in _NAME_TOKENS if token in name), Kind.PLAIN)


def kind_of_file(path: Path) -> Kind:
    """The format the file at `path` holds: GGUF by its magic, else by its tensors' names and dtypes;
    PLAIN for a file that is neither (models.single_file then refuses it as unreadable)."""
    with path.open("rb") as handle:
        if handle.read(4) == b"GGUF":
            return Kind.GGUF
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118
    except SafetensorError:
        return Kind.PLAIN
    if any(key.endswith(_NF4_STATE) for key in dtypes):
        return Kind.NF4
    weights = {key for key in dtypes if key.endswith(".weight")}
    if any(dtypes[key] == "U8" and dtypes.get(f"{key}_scale", "").startswith("F8") for key in weights):
        return Kind.NVFP4
    if any(dtypes[key].startswith("F8") for key in weights):
        return Kind.FP8
    return Kind.PLAIN


def dequantized_state(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors of the prequantized file at `path` in its original names, each quantized weight
    dequantized into `dtype` as WanGP's kernel-less linear layers do; other tensors as stored."""
    if kind_of_file(path) is Kind.GGUF:
        return _gguf_state(path, dtype)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        # Read a tensor when it is used: the file and its dequantized copy are never whole at once.
        stored = _Tensors(handle)
        _refuse_unsupported(path, stored)
        state: dict[str, torch.Tensor] = {}
        consumed = {"scaled_fp8"}  # a marker ComfyUI's scaled fp8 files carry, no weight
        for key in [key for key in stored if key.endswith(".weight")]:
            base = key.removesuffix(".weight")
            tensor, parts = _dequantized_weight(base, stored, dtype)
            if tensor is not None:
                state[key] = tensor
                consumed |= {key, *(f"{base}.{part}" for part in parts)}
        # Other float8 tensors (a bias, a modulation table) are cast, as WanGP casts fp8 parameters
        # outside its quantized linear layers.
        for key in [key for key in stored if key not in consumed and key not in state]:
            tensor = stored[key]
            state[key] = tensor.to(dtype) if "float8" in str(tensor.dtype) else tensor
    return state


class _Tensors(Mapping[str, "torch.Tensor"]):
    """The tensors of an open safetensors file by name, each read when asked for."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._keys = list(handle.keys())
        self._names = set(self._keys)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._names:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def dtype(self, key: str) -> str:
        """The safetensors dtype of `key` ("U8", "F8_E4M3", "BF16", ...), from the header."""
        return str(self._handle.get_slice(key).get_dtype())

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _refuse_unsupported(path: Path, stored: Mapping[str, Any]) -> None:
    nested = [key for key in stored if "nested_absmax" in key or "nested_quant_map" in key]
    states = [_json(stored[key]) for key in stored if key.endswith(_NF4_STATE)]
    if nested or any("nested_blocksize" in state for state in states):
        raise Unreadable(
            f"{path.name}: a double-quantized NF4 file (nested absmax), which WanGP's dequantizing "
            "fallback does not read either"
        )
    if other := sorted({state.get("quant_type", "nf4") for state in states} - {"nf4"}):
        raise Unreadable(f"{path.name}: bitsandbytes {', '.join(other)} weights, not NF4")
    if any(key.endswith((".qweight", ".wscales", ".smooth_factor")) for key in stored):
        raise Unreadable(f"{path.name}: a nunchaku SVDQuant file: it runs on nunchaku's CUDA kernels only")


def _dequantized_weight(
    base: str, stored: _Tensors, dtype: torch.dtype
) -> tuple[torch.Tensor | None, tuple[str, ...]]:
    """The weight of module `base` dequantized and the names of the parts it consumed, or (None, ())
    for a weight stored plain (told by the file's header, without reading it)."""
    if f"{base}{_NF4_STATE}" in stored:
        return _nf4(base, stored, dtype), _NF4_PARTS
    kind, scale = stored.dtype(f"{base}.weight"), f"{base}.weight_scale"
    if kind == "U8" and scale in stored and stored.dtype(scale).startswith("F8"):
        return _nvfp4(base, stored, dtype), _NVFP4_PARTS
    if kind.startswith("F8"):
        return _fp8(base, stored, dtype), _FP8_PARTS
    return None, ()


def _fp8(base: str, stored: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """WanGP's scaled FP8: the weight cast to `dtype` times its scale (scale_weight or weight_scale,
    per tensor or per output row; 1 when absent), multiplied in `dtype` as its fallback linear does.
    A weight that is not a matrix (a convolution) is cast without its scale, as WanGP casts the fp8
    parameters of modules other than linear layers."""
    weight = stored[f"{base}.weight"].to(dtype)
    scale = stored.get(f"{base}.scale_weight", stored.get(f"{base}.weight_scale"))
    if scale is None or weight.ndim != 2:
        return weight
    scale = scale.to(dtype)
    if scale.numel() == 1:
        return weight * scale.reshape(())
    if scale.numel() != weight.shape[0]:
        raise Unreadable(f"{base}: an fp8 scale of {scale.numel()} values for {weight.shape[0]} rows")
    return weight * scale.reshape(-1, 1)


def _nvfp4(base: str, stored: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """WanGP's NVFP4: two e2m1 codes a byte, a swizzled fp8 scale per 16 values, then a global
    factor: weight_scale_2 in the "tensorcore" layout (high nibble first), alpha x input_global_scale
    in the legacy one (low nibble first). A pre_quant_scale (WanGP multiplies the input by it) is
    folded into the weight's columns: the same product, rounded once more."""
    import torch

    packed = stored[f"{base}.weight"]
    rows, width = packed.shape[0], packed.shape[1] * 2
    tensorcore = f"{base}.weight_scale_2" in stored or f"{base}.input_scale" in stored
    lut = torch.tensor(_FP4_VALUES, dtype=dtype)
    high, low = (packed >> 4).long(), (packed & 0x0F).long()
    first, second = (high, low) if tensorcore else (low, high)
    values = torch.stack((lut[first], lut[second]), dim=-1).reshape(rows, width)
    scales = _deswizzled(stored[f"{base}.weight_scale"], rows, width // _NVFP4_BLOCK).to(dtype)
    values = (values.reshape(rows, -1, _NVFP4_BLOCK) * scales.unsqueeze(-1)).reshape(rows, width)
    values = values * _nvfp4_factor(base, stored, tensorcore, dtype)
    pre = stored.get(f"{base}.pre_quant_scale")
    return values if pre is None else values * pre.to(dtype).reshape(1, -1)


def _nvfp4_factor(base: str, stored: Mapping[str, torch.Tensor], tensorcore: bool, dtype: torch.dtype) -> Any:
    import torch

    if tensorcore:
        if f"{base}.weight_scale_2" not in stored:
            raise Unreadable(f"{base}: an NVFP4 weight with input_scale but no weight_scale_2")
        return stored[f"{base}.weight_scale_2"].to(dtype)
    if f"{base}.alpha" in stored and f"{base}.input_global_scale" in stored:
        alpha, global_scale = stored[f"{base}.alpha"], stored[f"{base}.input_global_scale"]
    elif f"{base}.input_absmax" in stored and f"{base}.weight_global_scale" in stored:
        global_scale = (2688.0 / stored[f"{base}.input_absmax"]).to(torch.float32)
        alpha = 1.0 / (global_scale * stored[f"{base}.weight_global_scale"].to(torch.float32))
    else:
        raise Unreadable(f"{base}: an NVFP4 weight without its global scales")
    return alpha.to(dtype) * global_scale.to(dtype)


def _deswizzled(scale: torch.Tensor, rows: int, groups: int) -> torch.Tensor:
    """The (rows, groups) block scales of a scale stored in the 128x4 tiles of NVIDIA's tensor-core
    layout (rows padded to 128, groups to 4), as WanGP's _deswizzle_nvfp4_scale reads it."""
    tiles_m, tiles_k = -(-rows // 128), -(-groups // 4)
    if scale.shape[0] < tiles_m * 128 or scale.shape[1] < tiles_k * 4:
        raise Unreadable(f"NVFP4 block scales of shape {tuple(scale.shape)} for {rows}x{groups} blocks")
    tiled = scale[: tiles_m * 128, : tiles_k * 4].reshape(tiles_m, tiles_k, 32, 4, 4)
    return tiled.permute(0, 3, 2, 1, 4).reshape(tiles_m * 128, tiles_k * 4)[:rows, :groups]


def _nf4(base: str, stored: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """bitsandbytes NF4: two codes a byte (high nibble first) into its 16-value quant_map, times
    one absmax per block, in float32, then cast: WanGP's _dequantize_bnb_nf4_weight."""
    import torch

    state = _json(stored[f"{base}{_NF4_STATE}"])
    shape = state.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise Unreadable(f"{base}: an NF4 quant state without the weight's 2-D shape")
    blocksize = int(state.get("blocksize") or 64)
    packed = stored[f"{base}.weight"].reshape(-1)
    codes = torch.stack(((packed >> 4).long(), (packed & 0x0F).long()), dim=-1).reshape(-1)
    total = int(shape[0]) * int(shape[1])
    quant_map = stored[f"{base}.weight.quant_map"].to(torch.float32)
    values = quant_map[codes[:total]].reshape(-1, blocksize)
    values = values * stored[f"{base}.weight.absmax"].to(torch.float32).reshape(-1, 1)
    return values.reshape(int(shape[0]), int(shape[1])).to(dtype)


def _json(tensor: torch.Tensor) -> dict[str, Any]:
    try:
        value = json.loads(bytes(tensor.reshape(-1).tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Unreadable(f"an unreadable bitsandbytes quant state: {error}") from error
    return value if isinstance(value, dict) else {}


def _gguf_state(path: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A GGUF file's tensors in torch's dimension order (GGUF lists them innermost first), at the
    shape ComfyUI-GGUF recorded for reshaped ones, without a diffusion_model. prefix, quantized
    ones dequantized into `dtype` (Q8_0 in `dtype` as WanGP's block function does; other types
    by the gguf package in float32, then cast: within one rounding of WanGP's own block code)."""
    import gguf
    import numpy as np
    import torch

    reader = gguf.GGUFReader(str(path))
    shapes = {
        name.removeprefix(_GGUF_ORIG_SHAPE): [int(dim) for dim in field.contents()]
        for name, field in reader.fields.items()
        if name.startswith(_GGUF_ORIG_SHAPE)
    }
    names = [tensor.name for tensor in reader.tensors]
    prefix = next((p for p in _GGUF_PREFIXES if any(name.startswith(p) for name in names)), "")
    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    state: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        shape = shapes.get(tensor.name) or [int(dim) for dim in reversed(tensor.shape.tolist())]
        kind = tensor.tensor_type
        if kind in plain:
            value = torch.from_numpy(np.array(tensor.data)).reshape(shape)
        elif kind == gguf.GGMLQuantizationType.Q8_0:
            value = _q8_0(np.array(tensor.data), dtype).reshape(shape)
        else:
            try:
                value = torch.from_numpy(gguf.quants.dequantize(tensor.data, kind)).reshape(shape).to(dtype)
            except NotImplementedError as error:
                raise Unreadable(f"{path.name}: GGUF type {kind.name} cannot be dequantized here") from error
        state[tensor.name.removeprefix(prefix)] = value
    return state


def _q8_0(blocks: Any, dtype: torch.dtype) -> torch.Tensor:
    # 34-byte blocks: an fp16 scale, then 32 int8 values; the scale cast to `dtype` before the product.
    import torch

    raw = torch.from_numpy(blocks).reshape(-1, 34)
    scale = raw[:, :2].contiguous().view(torch.float16).to(dtype)
    return (scale * raw[:, 2:].contiguous().view(torch.int8).to(dtype)).reshape(-1)
