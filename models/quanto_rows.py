"""WanGP's int8 quanto files for original layouts whose conversion cuts tensors along their rows.

An int8 quanto weight is its int8 rows (`weight._data`) and one scale per row (`weight._scale`),
with two per-module scalars (`input_scale`, `output_scale`). A layout that only splits, joins or
reorders a weight's output rows (a fused qkv cut in three, modulation halves swapped) converts the
quantized rows and their scales by the same cuts, exactly as mmgp splits WanGP's quantized modules
after loading, so the quantized model is the one WanGP runs. This module applies such a layout's
converter to a quanto state dict and renames its quantization map's modules to match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_DATA = ".weight._data"
# Per-module scalars, the same for every piece of a module that is cut.
_PER_MODULE = (".input_scale", ".output_scale")
# optimum-quanto's entry for a module whose weights are int8 and activations left as they are.
_INT8_WEIGHTS = {"weights": "qint8", "activations": "none"}

Converter = Callable[[dict[str, Any]], dict[str, Any]]


def quanto_converted(
    convert: Converter, state: dict[str, Any], quantization_map: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`state` (an int8 quanto state dict in the original layout) and its quantization map in the
    names `convert` gives. A file without a map in its metadata (WanGP then reads a `_map.json`
    beside it) gets the map of its int8 weights, which is what quanto writes for them."""
    pieces = {
        key.removesuffix(_DATA): module_pieces(convert, key.removesuffix(_DATA), value.shape)
        for key, value in state.items()
        if key.endswith(_DATA)
    }
    scalars = {key: state.pop(key) for key in list(state) if key.endswith(_PER_MODULE)}
    converted = convert(state)
    for key, value in scalars.items():
        module, _, field = key.rpartition(".")
        for piece in pieces.get(module, (module,)):
            converted[f"{piece}.{field}"] = value
    if quantization_map is None:
        if not pieces:
            return converted, None
        quantization_map = {module: dict(_INT8_WEIGHTS) for module in pieces}
    renamed = {
        piece: config
        for module, config in quantization_map.items()
        for piece in pieces.get(module, (module,))
    }
    return converted, renamed


def module_pieces(convert: Converter, module: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """The converted names of the original `module` whose weight has `shape`: run over a weight on
    the meta device, which has a shape and no data."""
    import torch

    probe = {f"{module}.weight": torch.empty(shape, device="meta")}
    return tuple(key.removesuffix(".weight") for key in convert(probe))


def quantized_original(
    model: Any, to_original: Converter, to_diffusers: Converter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A diffusers model quantized by optimum-quanto (int8 weights, frozen) as an int8 file of the
    original layout holds it: its state dict through `to_original` (the inverse of the row-cutting
    layout `to_diffusers`) and its quantization map in the original module names. Quantized per
    row, a fused module is the rows of its pieces quantized apart: joining them is quantizing it."""
    from optimum.quanto import quantization_map

    state = dict(model.state_dict())
    scalars = {key: state.pop(key) for key in list(state) if key.endswith(_PER_MODULE)}
    original = to_original(state)
    owner = {
        piece: key.removesuffix(_DATA)
        for key, value in original.items()
        if key.endswith(_DATA)
        for piece in module_pieces(to_diffusers, key.removesuffix(_DATA), value.shape)
    }
    for key, value in scalars.items():
        module, _, field = key.rpartition(".")
        # The pieces of a fused module share their scalars; the fused module keeps one copy.
        original.setdefault(f"{owner[module]}.{field}", value)
    return original, {owner[name]: config for name, config in quantization_map(model).items()}
