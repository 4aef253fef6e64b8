"""Tiny prequantized files written as WanGP's are (deepbeepmeep/Wan2GP 8681e9f7, shared/qtypes/):
each quantizer takes a transformer state in the original key layout and returns the file's tensors
and the weights they stand for ("snapped": the values on the format's grid). These are encoders of
our own, independent of models.prequantized's decoders, so a round trip through both proves the
decoder; weights already on the grid come back exactly.

- `scaled_fp8`: float8_e4m3fn weights with a per-row `scale_weight` (ComfyUI's scaled fp8).
- `nvfp4`: e2m1 nibbles, fp8 block scales per 16 in the 128x4 swizzled tiles, a global scale;
  "tensorcore" layout (weight_scale_2 / input_scale, high nibble first) or legacy (alpha /
  input_global_scale, low nibble first).
- `nf4`: bitsandbytes NF4: 16-value quant_map, absmax per 64 values, quant_state as JSON bytes.
- `write_gguf`: Q8_0 (the gguf package's encoder) for rows of 32, Q4_K (ours, on its grid) for rows
  of 256, F32 for the rest, shapes in GGUF's innermost-first order; tensors of more than two
  dimensions flattened to two, their shape under `comfy.gguf.orig_shape.<name>` as ComfyUI-GGUF does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

E4M3_MAX = 448.0
FP4_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
# bitsandbytes' NF4 code book (the normal distribution's quantiles, scaled to [-1, 1]).
_NF4_NEGATIVE = [-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0]
_NF4_POSITIVE = [0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0]
NF4_MAP = torch.tensor([*_NF4_NEGATIVE, *_NF4_POSITIVE])
Quantized = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def matrices(state: dict[str, torch.Tensor], columns: int = 1, count: int = 1) -> list[str]:
    """The 2-D `.weight`s of `state` whose rows split in `columns` and whose size splits in `count`."""
    return [
        key
        for key, tensor in state.items()
        if key.endswith(".weight") and tensor.ndim == 2 and tensor.shape[1] % columns == 0
        if tensor.numel() % count == 0
    ]


def scaled_fp8(state: dict[str, torch.Tensor]) -> Quantized:
    stored, snapped = dict(state), dict(state)
    for key in matrices(state):
        weight = state[key]
        scale = (weight.abs().amax(dim=1) / E4M3_MAX).clamp(min=1e-12)
        codes = (weight / scale[:, None]).to(torch.float8_e4m3fn)
        stored[key] = codes
        stored[key.removesuffix("weight") + "scale_weight"] = scale
        snapped[key] = codes.to(torch.float32) * scale[:, None]
    stored["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    return stored, snapped


def nvfp4(state: dict[str, torch.Tensor], tensorcore: bool = True) -> Quantized:
    stored, snapped = dict(state), dict(state)
    for key in matrices(state, columns=16):
        base = key.removesuffix(".weight")
        weight = state[key]
        factor = (weight.abs().max() / (6.0 * E4M3_MAX)).clamp(min=1e-12).reshape(())
        blocks = weight.reshape(weight.shape[0], -1, 16)
        scales = (blocks.abs().amax(dim=-1) / 6.0 / factor).to(torch.float8_e4m3fn)
        step = scales.to(torch.float32).unsqueeze(-1) * factor
        codes = _nearest(blocks / torch.where(step > 0, step, 1.0))
        values = FP4_GRID[codes & 7] * torch.where(codes >= 8, -1.0, 1.0)
        snapped[key] = ((values * scales.to(torch.float32).unsqueeze(-1)) * factor).reshape(weight.shape)
        pairs = codes.reshape(weight.shape[0], -1, 2).to(torch.uint8)
        first, second = pairs[..., 0], pairs[..., 1]
        stored[key] = (first << 4 | second) if tensorcore else (second << 4 | first)
        stored[f"{base}.weight_scale"] = _swizzled(scales)
        if tensorcore:
            stored[f"{base}.weight_scale_2"] = factor.to(torch.float32)
            stored[f"{base}.input_scale"] = torch.tensor(1.0)
        else:
            stored[f"{base}.alpha"] = factor.to(torch.float32)
            stored[f"{base}.input_global_scale"] = torch.tensor(1.0)
    return stored, snapped


def nf4(state: dict[str, torch.Tensor], blocksize: int = 64) -> Quantized:
    stored, snapped = dict(state), dict(state)
    for key in matrices(state, count=blocksize):
        weight = state[key]
        blocks = weight.reshape(-1, blocksize)
        absmax = blocks.abs().amax(dim=1)
        codes = (blocks / absmax[:, None]).unsqueeze(-1).sub(NF4_MAP).abs().argmin(dim=-1)
        snapped[key] = (NF4_MAP[codes] * absmax[:, None]).reshape(weight.shape)
        pairs = codes.reshape(-1, 2).to(torch.uint8)
        stored[key] = (pairs[:, 0] << 4 | pairs[:, 1]).reshape(-1, 1)
        quant_state = {"quant_type": "nf4", "blocksize": blocksize, "dtype": "float32"}
        quant_state["shape"] = list(weight.shape)
        stored[f"{key}.absmax"] = absmax
        stored[f"{key}.quant_map"] = NF4_MAP.clone()
        stored[f"{key}.quant_state.bitsandbytes__nf4"] = torch.tensor(
            list(json.dumps(quant_state).encode()), dtype=torch.uint8
        )
    return stored, snapped


def write_gguf(state: dict[str, torch.Tensor], path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """`state` as a GGUF file at `path` (names behind `prefix`); returns the snapped weights."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "wan")
    snapped = dict(state)
    for key, tensor in state.items():
        array = tensor.to(torch.float32).numpy()
        if key.endswith(".weight") and tensor.ndim == 2 and tensor.shape[1] % 256 == 0:
            raw, values = _q4_k(tensor)
            snapped[key] = values
            writer.add_tensor(prefix + key, raw, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        elif key.endswith(".weight") and tensor.ndim == 2 and tensor.shape[1] % 32 == 0:
            raw = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            snapped[key] = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))
            writer.add_tensor(prefix + key, raw, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif tensor.ndim > 2:  # ComfyUI-GGUF stores these flattened, their shape in the metadata
            writer.add_array(f"comfy.gguf.orig_shape.{prefix}{key}", list(tensor.shape))
            writer.add_tensor(prefix + key, array.reshape(tensor.shape[0], -1))
        else:
            writer.add_tensor(prefix + key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return snapped


def _q4_k(weight: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Q4_K super-blocks of 256: fp16 d and dmin, 8 sub-blocks of 32 with 6-bit scale and min (kept
    under 16 here, so their packing needs no high bits), 4-bit codes; value = d*sc*q - dmin*m."""
    rows = weight.reshape(-1, 256)
    raw = np.zeros((rows.shape[0], 144), dtype=np.uint8)
    values = torch.zeros_like(rows)
    for row in range(rows.shape[0]):
        subs = rows[row].reshape(8, 32)
        low, high = subs.amin(dim=1).clamp(max=0), subs.amax(dim=1).clamp(min=0)
        d = torch.tensor(float((high - low).max()) / (15 * 15) or 1.0).half().float()
        dmin = torch.tensor(float(-low.min()) / 15 or 1.0).half().float()
        mins = (-low / dmin).round().clamp(0, 15)
        scales = ((high - low) / 15 / d).round().clamp(1, 15)
        codes = ((subs + (dmin * mins)[:, None]) / (d * scales)[:, None]).round().clamp(0, 15)
        values[row] = ((d * scales)[:, None] * codes - (dmin * mins)[:, None]).reshape(-1)
        packed = np.zeros(144, dtype=np.uint8)
        packed[0:2] = np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)
        packed[2:4] = np.frombuffer(np.float16(dmin).tobytes(), dtype=np.uint8)
        sc, mn = scales.to(torch.uint8).numpy(), mins.to(torch.uint8).numpy()
        packed[4:8], packed[8:12] = sc[:4], mn[:4]
        packed[12:16] = (sc[4:] & 0xF) | (mn[4:] << 4)
        q = codes.to(torch.uint8).numpy()
        for chunk in range(4):  # 32 bytes: sub-block 2c in the low nibbles, 2c+1 in the high ones
            packed[16 + 32 * chunk : 48 + 32 * chunk] = q[2 * chunk] | (q[2 * chunk + 1] << 4)
        raw[row] = packed
    return raw.reshape(weight.shape[0], -1), values.reshape(weight.shape)


def _nearest(scaled: torch.Tensor) -> torch.Tensor:
    # The e2m1 code nearest each value: magnitude index 0-7, bit 3 the sign.
    index = (scaled.abs().unsqueeze(-1) - FP4_GRID).abs().argmin(dim=-1)
    return index | torch.where(scaled < 0, 8, 0)


def _swizzled(scales: torch.Tensor) -> torch.Tensor:
    """(rows, groups) block scales into the 128x4 tiles of the tensor-core layout, padded."""
    rows, groups = scales.shape
    tiles_m, tiles_k = -(-rows // 128), -(-groups // 4)
    padded = torch.zeros(tiles_m * 128, tiles_k * 4, dtype=scales.dtype)
    padded[:rows, :groups] = scales
    tiles = padded.view(torch.uint8).reshape(tiles_m, 4, 32, tiles_k, 4).permute(0, 3, 2, 1, 4)
    return tiles.reshape(tiles_m * 128, tiles_k * 4).view(scales.dtype)
