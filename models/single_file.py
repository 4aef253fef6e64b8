"""Transformers from single-file checkpoints in the original key layout (WanGP's model files).

WanGP ships each model's transformer as one `.safetensors` file per precision (`..._mbf16`,
`..._quanto_mbf16_int8`, `..._quanto_mfp16_int8`) with the keys of the model's own code, not
diffusers'. This module reads such a file into the diffusers class of the preset's pipeline; the
other components (VAE, text encoders, scheduler) come from the preset's diffusers folder, which also
supplies the transformer's config, so nothing is asked of a model hub.

Public API, for the model definitions and the pipeline host:
- `LAYOUTS`, `SINGLE_FILE_FAMILIES`, `PIPELINE_TRANSFORMERS`: which transformer classes, families
  and pipelines load here, and how each class's original key layout becomes diffusers' names.
- `choose_file(urls, caps, quantize, quanto_installed)`: the file of a definition's URL list that
  WanGP would load on that machine, as a `FileChoice`; `SingleFileRefused` when none can load here.
- `load_transformer(preset, path, dtype, base)`: the transformer of `path`, with its config from the
  diffusers folder `base`; `SingleFileRefused` names the missing or unknown keys of a file that does
  not fit, and refuses an int8 quanto file off CUDA or without mmgp.
- `load_pipeline(preset, path, dtype, base, path2)`: the preset's pipeline from `base` with that
  transformer, and a two-expert model's low-noise expert (`transformer_2`, or the component
  SECOND_TRANSFORMERS names) from `path2`.
- `check_loadable(urls)`: SingleFileRefused when no machine of the farm could load any of `urls`.

WanGP's GGUF, NVFP4, scaled FP8 and bitsandbytes NF4 files are dequantized into the compute dtype
first (models.prequantized), then converted as a bf16 file of their layout is.

Key names are converted by diffusers' own converters (`convert_wan_transformer_to_diffusers`, ...), so a
file loads exactly as diffusers' `from_single_file` reads it; the check of the key set is ours,
because diffusers only warns about unknown keys and leaves missing ones unset.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from models import prequantized
from models.chroma_layout import chroma_to_diffusers
from models.flux_layouts import flux1_to_diffusers, flux2_to_diffusers
from models.gpus import ArchCaps, arch_caps
from models.hunyuan15_layout import hunyuan15_to_diffusers
from models.hunyuan_layout import hunyuan_to_diffusers
from models.ideogram4_layout import ideogram4_to_diffusers
from models.kandinsky5_layout import kandinsky5_layout
from models.krea2_layout import krea2_to_diffusers
from models.ltx2_layout import ltx2_layout
from models.preset import ModelPreset
from models.qwen_layouts import qwen_image_layout, z_image_layout
from models.sa3_layout import sa3_transformer
from models.single_file_refused import SingleFileRefused
from models.wan_offshoots import skyreels_layout

if TYPE_CHECKING:  # torch is imported where a file is loaded: model definitions are read without it
    import torch


@dataclass(frozen=True)
class Layout:
    """How the original key layout of one diffusers transformer class becomes diffusers' names."""

    # A state dict in the original names -> the same tensors in diffusers' names.
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    # `convert` only renames, so it can run over names alone: int8 quanto files (whose tensors are
    # quantized pieces) load only for such layouts.
    names_only: bool = True
    # `convert` converts tensors but only cuts, joins or reorders their rows: an int8 quanto file's
    # rows and per-row scales are converted alike (models.quanto_rows), so those files load too.
    int8_rows: bool = False


def _wan_layout(state: dict[str, Any]) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return dict(convert_wan_transformer_to_diffusers(state))


# Each transformer class whose WanGP single files load here, with its layout. A family joins by a
# row here and its pipelines' rows in PIPELINE_TRANSFORMERS.
LAYOUTS: dict[str, Layout] = {
    "WanTransformer3DModel": Layout(_wan_layout),
    # VACE's blocks in the original layout (vace_blocks.N, vace_patch_embedding): Wan's converter.
    "WanVACETransformer3DModel": Layout(_wan_layout),
    "QwenImageTransformer2DModel": Layout(qwen_image_layout),
    "ZImageTransformer2DModel": Layout(z_image_layout),
    # Fused qkv (and FLUX.1's fused linear1) are split: tensors are converted, not names alone.
    "FluxTransformer2DModel": Layout(flux1_to_diffusers, names_only=False),
    "Flux2Transformer2DModel": Layout(flux2_to_diffusers, names_only=False),
    "SkyReelsV2Transformer3DModel": Layout(skyreels_layout),
    "ChronoEditTransformer3DModel": Layout(_wan_layout),
    "Kandinsky5Transformer3DModel": Layout(kandinsky5_layout),
    "LTX2VideoTransformer3DModel": Layout(ltx2_layout),
    # The token refiner's fused qkv is split and the final modulation reordered: tensors, not names.
    "HunyuanVideo15Transformer3DModel": Layout(hunyuan15_to_diffusers, names_only=False, int8_rows=True),
    # Fused qkv (and each single block's linear1) are cut along their rows: tensors, not names.
    "HunyuanVideoTransformer3DModel": Layout(hunyuan_to_diffusers, names_only=False, int8_rows=True),
    # Stable Audio 3: the file holds the duration embedder too; load_pipeline reads both from it
    # (models.sa3_layout.load_sa3_pipeline).
    "StableAudio3DiTModel": Layout(sa3_transformer, names_only=False),
    # Each block's modulation vectors are reshaped: tensors, not names alone.
    "Krea2Transformer2DModel": Layout(krea2_to_diffusers, names_only=False),
    # FLUX.1's fused projections are split (models.chroma_layout): tensors, not names alone.
    "ChromaTransformer2DModel": Layout(chroma_to_diffusers, names_only=False),
    # A fused qkv is split in three: tensors, not names alone.
    "Ideogram4Transformer2DModel": Layout(ideogram4_to_diffusers, names_only=False),
}
# The catalogue families (`ModelPreset.family`) whose files load here.
SINGLE_FILE_FAMILIES = frozenset(
    {
        "wan",
        "qwen-image",
        "z-image",
        "flux",
        "flux2",
        "kandinsky5",
        "ltx2",
        "hunyuan15",
        "krea2",
        "hunyuan",
        "ideogram4",
        "chroma",
        "stable-audio3",
    }
)
# The transformer class of each pipeline whose transformer loads from a single file.
PIPELINE_TRANSFORMERS = {
    "WanPipeline": "WanTransformer3DModel",
    "WanImageToVideoPipeline": "WanTransformer3DModel",
    "WanVACEPipeline": "WanVACETransformer3DModel",
    "QwenImagePipeline": "QwenImageTransformer2DModel",
    "QwenImageEditPipeline": "QwenImageTransformer2DModel",
    "QwenImageEditPlusPipeline": "QwenImageTransformer2DModel",
    "ZImagePipeline": "ZImageTransformer2DModel",
    "FluxPipeline": "FluxTransformer2DModel",
    "FluxKontextPipeline": "FluxTransformer2DModel",
    "Flux2Pipeline": "Flux2Transformer2DModel",
    "Flux2KleinPipeline": "Flux2Transformer2DModel",
    "SkyReelsV2DiffusionForcingPipeline": "SkyReelsV2Transformer3DModel",
    "ChronoEditPipeline": "ChronoEditTransformer3DModel",
    "LucyEditPipeline": "WanTransformer3DModel",
    "Kandinsky5T2VPipeline": "Kandinsky5Transformer3DModel",
    "Kandinsky5I2VPipeline": "Kandinsky5Transformer3DModel",
    "LTX2Pipeline": "LTX2VideoTransformer3DModel",
    "HunyuanVideoPipeline": "HunyuanVideoTransformer3DModel",
    "HunyuanVideoImageToVideoPipeline": "HunyuanVideoTransformer3DModel",
    "StableAudio3Pipeline": "StableAudio3DiTModel",
    "HunyuanVideo15Pipeline": "HunyuanVideo15Transformer3DModel",
    "HunyuanVideo15ImageToVideoPipeline": "HunyuanVideo15Transformer3DModel",
    "Krea2Pipeline": "Krea2Transformer2DModel",
    "ChromaPipeline": "ChromaTransformer2DModel",
    "Ideogram4Pipeline": "Ideogram4Transformer2DModel",
}
# The component a definition's URLs2 file loads into, where it is not a low-noise expert
# (`transformer_2`): Ideogram 4's unconditional transformer, the other branch of its CFG.
SECOND_TRANSFORMERS = {"Ideogram4Pipeline": "unconditional_transformer"}
# Name tokens of prequantized files: int8 (optimum-quanto, read through mmgp) loads as such; GGUF,
# NVFP4, scaled FP8 and NF4 files are dequantized at load (models.prequantized).
INT8_TOKEN = "int8"
# "svdq"/"int4": nunchaku's SVDQuant files (int4 / fp4 with low-rank branches): nunchaku's CUDA
# kernels only run them, and the farm has neither those kernels nor a dequantizing reading of them.
_OTHER_QUANT_TOKENS = ("int4", "svdq")
# Suffixes optimum-quanto gives the tensors of a quantized weight.
_QUANTO_SUFFIXES = ("._data", "._scale")
_INT8_ON_CPU = "an int8 quanto file: it needs a CUDA card and mmgp, and this agent runs on the CPU"
_INT8_WITHOUT_MMGP = "an int8 quanto file: it needs mmgp and optimum-quanto, which are not installed here"
MAX_NAMED_KEYS = 8  # a refusal names this many keys, then counts the rest


@dataclass(frozen=True)
class FileChoice:
    """The file of a definition's URLs to load, and the dtype its transformer runs in."""

    url: str
    quantized: bool  # an int8 quanto file, read through mmgp on CUDA
    dtype: str  # "bf16", "fp16" or "fp32" (the CPU)

    @property
    def filename(self) -> str:
        return file_name(self.url)


def choose_file(
    urls: Sequence[str],
    caps: ArchCaps | None,
    quantize: bool,
    quanto_installed: bool,
    arch_dtype: str | None = None,
) -> FileChoice:
    """The file WanGP would pick from `urls` on a card with `caps` (None: the CPU).

    `quantize`: the memory profile quantizes the transformer; `arch_dtype`: the dtype the model's
    definition imposes ("fp16"/"bf16"), if any. Without quantization WanGP takes the first file and
    casts it to the card's type; with it, the first int8 file whose name carries that type.
    """
    if not urls:
        raise SingleFileRefused("the model definition lists no transformer file")
    dtype = "fp32" if caps is None else arch_dtype if arch_dtype in ("bf16", "fp16") else caps.compute_dtype
    int8 = [url for url in urls if INT8_TOKEN in file_name(url).lower()]
    if quantize and caps is not None and quanto_installed and int8:
        url = ([url for url in int8 if dtype in file_name(url).lower()] or int8)[0]
        # A quanto file computes in the type its name carries, whatever the card prefers.
        named = next((kind for kind in ("bf16", "fp16") if kind in file_name(url).lower()), dtype)
        return FileChoice(url, quantized=True, dtype=named)
    first = urls[0]
    reason = _unloadable(first, caps, quantize, quanto_installed)
    if reason is not None:
        raise SingleFileRefused(f"{file_name(first)}: {reason}")
    return FileChoice(first, quantized=False, dtype=dtype)


# The most capable card a file may meet: bf16, with mmgp and a quantizing profile.
_ANY_CARD = arch_caps((9, 0))


def check_loadable(urls: Sequence[str], int8: bool = True) -> None:
    """SingleFileRefused, naming the file, when no card of the farm could load any of `urls`;
    `int8` False for a model whose layout cannot read int8 files (reads_int8), which then loads the
    first file on every profile, as the pipeline host does."""
    first = file_name(urls[0]) if urls else ""
    if not int8 and INT8_TOKEN in first.lower():
        raise SingleFileRefused(
            f"{first}: an int8 quanto file, listed first: this model's original layout is converted "
            "tensor by tensor, so only a bf16/fp16 file listed first loads"
        )
    choose_file(urls, _ANY_CARD, quantize=int8, quanto_installed=True)


def reads_int8(preset: ModelPreset) -> bool:
    """Whether the preset's transformer reads WanGP's int8 quanto files (a names-only layout).
    Where it does not, a quantizing profile loads the bf16/fp16 file and mmgp quantizes it."""
    name = PIPELINE_TRANSFORMERS.get(preset.pipeline)
    return name is None or name not in LAYOUTS or LAYOUTS[name].names_only or LAYOUTS[name].int8_rows


def load_transformer(
    preset: ModelPreset,
    path: Path,
    dtype: torch.dtype,
    base: Path,
    subfolder: str = "transformer",
    modules: Sequence[Path] = (),
) -> Any:
    """The preset's transformer with the weights of the single file `path`, in `dtype`, its config
    read from the diffusers folder `base` (its `<subfolder>/config.json`: `transformer_2` for the
    low-noise expert of a two-expert Wan 2.2). `modules`: files of WanGP modules merged into it
    (VACE's blocks beside a t2v file), one state dict with the file's."""
    model_class = _transformer_class(preset)
    layout = LAYOUTS[model_class.__name__]
    if prequantized.kind_of_file(path) is not prequantized.Kind.PLAIN:
        if modules:
            raise SingleFileRefused(
                f"{path.name}: modules merged into a prequantized file are not supported yet"
            )
        return _load_dequantized(model_class, path, dtype, base, subfolder)
    keys, metadata = _header(path)
    owners = _key_owners(path, keys, modules)
    if any(key.endswith(_QUANTO_SUFFIXES) for key in owners) or "quantization_map" in metadata:
        if modules:
            raise SingleFileRefused(
                f"{path.name}: modules merged into an int8 quanto file are not supported yet"
            )
        if not layout.names_only and not layout.int8_rows:
            raise SingleFileRefused(
                f"{path.name}: an int8 quanto file of {model_class.__name__}, whose original layout "
                "is converted tensor by tensor, not by name: load its bf16/fp16 file"
            )
        return _load_quanto(model_class, path, dtype, base / subfolder)
    from safetensors import safe_open

    with ExitStack() as stack:
        handles = {
            part: stack.enter_context(safe_open(str(part), framework="pt")) for part in {*owners.values()}
        }
        original = {key: handles[owners[key]].get_tensor(key) for key in owners}
    return _from_original(model_class, path, original, dtype, base, subfolder)


def _load_dequantized(model_class: Any, path: Path, dtype: torch.dtype, base: Path, subfolder: str) -> Any:
    """A prequantized file (models.prequantized), dequantized into `dtype` in its original names,
    then converted as a bf16 file of the same layout is."""
    try:
        original = prequantized.dequantized_state(path, dtype)
    except prequantized.Unreadable as error:
        raise SingleFileRefused(f"{path.name}: {error}") from error
    return _from_original(model_class, path, original, dtype, base, subfolder)


def _from_original(
    model_class: Any, path: Path, original: dict[str, Any], dtype: torch.dtype, base: Path, subfolder: str
) -> Any:
    layout = LAYOUTS[model_class.__name__]
    expected = _expected_keys(model_class, base / subfolder)
    if layout.names_only:
        renames = diffusers_names(list(original), model_class.__name__)
        _check_keys(path, renames, expected)
        state = {new: original[old] for new, old in renames.items()}
    else:
        state = layout.convert(original)
        _check_keys(path, {key: key for key in state}, expected)
    if not _has_single_file_mapping(model_class):
        return _from_state(model_class, state, base / subfolder, dtype)
    # Already in diffusers' names: from_single_file loads it as given, with the local config.
    model = model_class.from_single_file(
        state, config=str(base), subfolder=subfolder, torch_dtype=dtype, local_files_only=True
    )
    return _kept_in_fp32(model, state)


def _has_single_file_mapping(model_class: Any) -> bool:
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    return any(name in SINGLE_FILE_LOADABLE_CLASSES for name in (c.__name__ for c in model_class.__mro__))


def _from_state(model_class: Any, state: dict[str, Any], config_dir: Path, dtype: torch.dtype) -> Any:
    """A class diffusers' from_single_file does not map (Kandinsky 5): built from the config in
    `config_dir` without weights, the checked state assigned, cast to `dtype` as from_pretrained
    casts (the class's _keep_in_fp32_modules stay float32)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = model_class.from_config(json.loads((config_dir / "config.json").read_text()))
    model.load_state_dict(state, strict=True, assign=True)
    return _kept_in_fp32(model.to(dtype), state).eval()


def _kept_in_fp32(model: Any, state: dict[str, Any]) -> Any:
    """`model` with the tensors its class keeps in float32 (`_keep_in_fp32_modules`) back in float32,
    read again from `state`, as from_pretrained loads a folder: from_single_file casts them with the
    rest (diffusers 0.42), and a cast back would keep bf16's rounding."""
    keep = set(getattr(type(model), "_keep_in_fp32_modules", None) or ())
    tensors = (*model.named_parameters(), *model.named_buffers())
    for name, tensor in tensors:  # a name kept, as a module of the path or the tensor itself
        if tensor.is_floating_point() and keep.intersection(name.split(".")):
            tensor.data = state.get(name, tensor.data).float()
    return model


def _key_owners(path: Path, keys: Sequence[str], modules: Sequence[Path]) -> dict[str, Path]:
    """Each tensor name of `path` and its `modules` with the file holding it; a name in two files
    is refused (which one WanGP's merge keeps is not ours to guess)."""
    owners = dict.fromkeys(keys, path)
    for module in modules:
        for key in _header(module)[0]:
            if key in owners:
                raise SingleFileRefused(f"{module.name}: its tensor {key} is in {owners[key].name} too")
            owners[key] = module
    return owners


def load_pipeline(
    preset: ModelPreset,
    path: Path | None,
    dtype: torch.dtype,
    base: Path,
    path2: Path | None = None,
    modules: Sequence[Path] = (),
) -> Any:
    """The preset's pipeline from the diffusers folder `base`, its transformer from `path` and its
    low-noise expert (`transformer_2`; Ideogram 4's unconditional transformer, SECOND_TRANSFORMERS)
    from `path2`; the folder supplies either one left None.
    `modules` (WanGP's VACE module) are merged into each transformer loaded from a file, as WanGP
    shares a module between two experts."""
    import diffusers

    if preset.pipeline == "StableAudio3Pipeline" and path is not None:
        from models.sa3_layout import load_sa3_pipeline

        return load_sa3_pipeline(preset, path, dtype, base)
    files = {"transformer": path, SECOND_TRANSFORMERS.get(preset.pipeline, "transformer_2"): path2}
    experts = {
        name: load_transformer(preset, file, dtype, base, subfolder=name, modules=modules)
        for name, file in files.items()
        if file is not None
    }
    from models.qwen_processor import processor_parts

    pipeline_class = getattr(diffusers, preset.pipeline)
    return pipeline_class.from_pretrained(
        base, **experts, **processor_parts(preset.pipeline, base), dtype=dtype
    )


def replaced_subfolders(preset: ModelPreset, *files: object) -> tuple[str, ...]:
    """The subfolders of `preset`'s diffusers folder whose weights single files replace: the
    transformer for the first of `files` given, the second transformer for the second."""
    names = ("transformer", SECOND_TRANSFORMERS.get(preset.pipeline, "transformer_2"))
    return tuple(name for name, file in zip(names, files, strict=False) if file is not None)


def diffusers_names(
    original_keys: Sequence[str], transformer_class: str = "WanTransformer3DModel"
) -> dict[str, str]:
    """Diffusers' name for each original key, as {diffusers name: original name}, by running the
    class's converter over the names alone (a names-only layout: it only renames keys)."""
    layout = LAYOUTS[transformer_class]
    if not layout.names_only:
        raise ValueError(f"{transformer_class}'s layout converts tensors: it cannot run over names")
    converted = layout.convert({key: key for key in original_keys})
    return {new: str(old) for new, old in converted.items()}


def file_name(url: str) -> str:
    """The file name of a URL or local path."""
    return PurePosixPath(urlparse(url).path).name or url


def quanto_installed() -> bool:
    """Whether mmgp and optimum-quanto, which read WanGP's int8 files, are importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("mmgp", "optimum.quanto"))


def _unloadable(url: str, caps: ArchCaps | None, quantize: bool, quanto: bool) -> str | None:
    """Why the file at `url` cannot be loaded on this machine, or None."""
    name = file_name(url).lower()
    other = next((token for token in _OTHER_QUANT_TOKENS if token in name), None)
    if other is not None:
        return (
            f"a prequantized {other} file (nunchaku's SVDQuant), which only nunchaku's CUDA kernels "
            "run: the farm does not load it"
        )
    if INT8_TOKEN not in name:
        return None
    if caps is None:
        return _INT8_ON_CPU
    if not quanto:
        return _INT8_WITHOUT_MMGP
    if not quantize:
        return "an int8 quanto file, but the memory profile keeps the transformer unquantized"
    return None


def _transformer_class(preset: ModelPreset) -> Any:
    import diffusers

    name = PIPELINE_TRANSFORMERS.get(preset.pipeline)
    if preset.family not in SINGLE_FILE_FAMILIES or name is None:
        families = ", ".join(sorted(SINGLE_FILE_FAMILIES))
        raise SingleFileRefused(
            f"{preset.id} ({preset.family}, {preset.pipeline}): single-file transformers load only "
            f"for {families} ({', '.join(PIPELINE_TRANSFORMERS)})"
        )
    return getattr(diffusers, name)


def _header(path: Path) -> tuple[list[str], dict[str, str]]:
    """The tensor names and metadata of a safetensors file, without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys()), dict(handle.metadata() or {})
    except (OSError, SafetensorError) as error:
        raise SingleFileRefused(f"{path.name}: not a readable safetensors file: {error}") from error


def _expected_keys(model_class: Any, config_dir: Path) -> set[str]:
    """The state-dict names of `model_class` built (without weights) from the config in `config_dir`."""
    from accelerate import init_empty_weights

    config = json.loads((config_dir / "config.json").read_text())
    with init_empty_weights():
        model = model_class.from_config(config)
    return set(model.state_dict())


def _check_keys(path: Path, renames: dict[str, str], expected: set[str]) -> None:
    missing = sorted(expected - renames.keys())
    unknown = sorted(renames[key] for key in renames.keys() - expected)
    problems = [
        f"{label} {len(keys)} key(s): {_some(keys)}"
        for label, keys in (("lacks", missing), ("has unknown", unknown))
        if keys
    ]
    if problems:
        raise SingleFileRefused(
            f"{path.name} does not fit the transformer of its model: it " + "; it ".join(problems)
        )


def _some(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMED_KEYS])
    return shown if len(keys) <= MAX_NAMED_KEYS else f"{shown} and {len(keys) - MAX_NAMED_KEYS} more"


def _load_quanto(model_class: Any, path: Path, dtype: torch.dtype, config_dir: Path) -> Any:
    """An int8 quanto file through mmgp's loader, its names (and its quantization map's) renamed to
    diffusers' on the way; CUDA only, as mmgp's quantized layers are."""
    import torch

    if not torch.cuda.is_available():
        raise SingleFileRefused(f"{path.name}: {_INT8_ON_CPU}")
    if not quanto_installed():
        raise SingleFileRefused(f"{path.name}: {_INT8_WITHOUT_MMGP}")
    from models.mmgp_compat import import_offload

    offload = import_offload()
    return offload.fast_load_transformers_model(
        str(path),
        modelClass=model_class,
        forcedConfigPath=str(config_dir / "config.json"),
        preprocess_sd=functools.partial(_renamed_for_mmgp, model_class.__name__),
        default_dtype=dtype,
    )


def _renamed_for_mmgp(
    transformer_class: str,
    state: dict[str, Any],
    quantization_map: dict[str, Any] | str | None,
    tied: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """mmgp's preprocess hook: tensors and quantized module names in diffusers' names."""
    if isinstance(quantization_map, str):  # mmgp hands the file's metadata entry over undecoded
        return _renamed_for_mmgp(transformer_class, state, json.loads(quantization_map), tied)
    layout = LAYOUTS[transformer_class]
    if not layout.names_only:
        from models.quanto_rows import quanto_converted

        return (*quanto_converted(layout.convert, state, quantization_map), tied)
    renames = diffusers_names(list(state), transformer_class)
    renamed = {new: state[old] for new, old in renames.items()}
    if quantization_map is None:
        return renamed, None, tied
    modules = {_module_name(name, transformer_class): value for name, value in quantization_map.items()}
    return renamed, modules, tied


def _module_name(name: str, transformer_class: str) -> str:
    # The map names modules; the converter's patterns match inside a weight's name.
    (new,) = diffusers_names([f"{name}.weight"], transformer_class)
    return new.removesuffix(".weight")
