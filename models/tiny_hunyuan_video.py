"""The tiny HunyuanVideo transformer (models.tiny.tiny_hunyuan) as WanGP's single files: its float
file and its int8 quanto file, both in HunyuanVideo's original key layout (models.hunyuan_layout).

The int8 file is what WanGP ships beside its bf16 one: optimum-quanto's int8 rows (`weight._data`)
with one scale per row (`weight._scale`) and the module scalars (`input_scale`, `output_scale`),
its quantization map in the file's metadata (models.quanto_rows.quantized_original).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.hunyuan_layout import hunyuan_to_diffusers, hunyuan_to_original
from models.quanto_rows import Converter, quantized_original
from models.tiny import tiny_hunyuan


def transformer() -> Any:
    """The tiny HunyuanVideo transformer, the one tiny_hunyuan's folder holds (seeded: same weights)."""
    return tiny_hunyuan().transformer


def write_single_file(path: Path) -> Path:
    """The tiny transformer's float weights in WanGP's layout, saved at `path`."""
    from safetensors.torch import save_file

    state = hunyuan_to_original(transformer().state_dict())
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


def quantized(model: Any) -> Any:
    """`model` with its linear weights quantized to int8 by optimum-quanto and frozen (in place)."""
    from optimum.quanto import freeze, qint8, quantize

    quantize(model, weights=qint8)
    freeze(model)
    return model


def write_int8_single_file(
    path: Path,
    model: Any = None,
    layout: tuple[Converter, Converter] = (hunyuan_to_original, hunyuan_to_diffusers),
) -> Path:
    """`model` (quantized(); the tiny transformer quantized by default) as WanGP's int8 quanto file
    at `path`, in the original layout of `layout` (to the original names, and back to diffusers')."""
    from safetensors.torch import save_file

    state, modules = quantized_original(model or quantized(transformer()), *layout)
    metadata = {"quantization_map": json.dumps(modules)}
    save_file({key: value.contiguous() for key, value in state.items()}, str(path), metadata=metadata)
    return path
