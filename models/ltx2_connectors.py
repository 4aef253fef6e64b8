"""LTX-2's text connectors from WanGP's own file (Wan2GP 8681e9f7: models/ltx2/ltx2_handler.py
_get_embeddings_connector_filename, ltx2.py and ltx_core/text_encoders/gemma).

The 19B's distilled checkpoints (ltx2_pipeline "distilled") come with text connectors of their
own, `ltx-2-19b-distilled_embeddings_connector.safetensors`, where the dev pipeline reads the dev
ones the catalogue's folder holds. The file holds the video and audio connectors (two 1D
transformers each with learnable registers) in the original names; the text projection before them
is one file for both pipelines in WanGP, so the folder's `text_proj_in` stays. The pipeline host
loads the file over the folder's `connectors` component.

WanGP's loader (TEXT_EMBEDDINGS_CONNECTOR_KEY_OPS) strips leading `model.` / `velocity_model.`,
reads `diffusion_model.{video,audio}_embeddings_connector.` or `{video,audio}_connector.` names,
skips any other tensor, and takes a file with none of those names as already in its module's names
(`{video,audio}_embeddings_connector.`). Inside a connector its names are diffusers' but for
`transformer_1d_blocks` and the QK norms `q_norm` / `k_norm`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.ltx2_stages import DISTILLED_PIPELINE, MODELS
from models.single_file import MAX_NAMED_KEYS, SingleFileRefused

if TYPE_CHECKING:
    from models.preset import ModelPreset

COMPONENT = "connectors"  # LTX2Pipeline's component holding them
# Diffusers' connector -> WanGP's prefixes for it, in the order its key ops try them.
_PREFIXES = {
    "video_connector.": ("diffusion_model.video_embeddings_connector.", "video_connector."),
    "audio_connector.": ("diffusion_model.audio_embeddings_connector.", "audio_connector."),
}
# A file with none of those: its names are those of WanGP's connector module itself.
_MODULE_PREFIXES = {
    "video_connector.": "video_embeddings_connector.",
    "audio_connector.": "audio_embeddings_connector.",
}
_STRIPPED = ("model.", "velocity_model.")
# Inside a connector: diffusers' name, WanGP's.
_RENAMES = (
    ("transformer_blocks.", "transformer_1d_blocks."),
    (".norm_q.", ".q_norm."),
    (".norm_k.", ".k_norm."),
)
# The prefix this module writes: the names of Lightricks' checkpoint the file is split from.
WRITTEN_PREFIX = "model.diffusion_model."


def connectors_url(preset: ModelPreset) -> str:
    """The URL (or file name) of the text connectors `preset` renders with in place of its folder's;
    "" when the folder's are its own."""
    if preset.ltx2_pipeline != DISTILLED_PIPELINE:
        return ""
    model = MODELS.get(preset.derived_from or preset.id)
    return model.distilled_connectors if model is not None else ""


def diffusers_names(original_keys: Iterable[str]) -> dict[str, str]:
    """{diffusers name in the connectors component: original name} for the keys WanGP's loader
    reads; the others (skipped by WanGP too) are left out."""
    stripped = {_strip(key): key for key in original_keys}
    found = {}
    for key, original in stripped.items():
        for connector, prefixes in _PREFIXES.items():
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is not None:
                found[connector + _inner(key.removeprefix(prefix))] = original
    if found:
        return found
    for key, original in stripped.items():
        for connector, prefix in _MODULE_PREFIXES.items():
            if key.startswith(prefix):
                found[connector + _inner(key.removeprefix(prefix))] = original
    return found


def original_name(key: str) -> str:
    """The name WanGP's connectors file gives one key of diffusers' video or audio connector."""
    connector, _, inner = key.partition(".")
    inner = "." + inner
    for diffusers_name, original in _RENAMES:
        inner = inner.replace(_dotted(diffusers_name), _dotted(original))
    return WRITTEN_PREFIX + _MODULE_PREFIXES[connector + "."] + inner[1:]


def load_connectors(pipe: Any, path: Path) -> None:
    """The video and audio connectors of the file `path` into `pipe`'s connectors component, cast to
    its dtype; SingleFileRefused names the keys missing from the file or that fit nowhere."""
    import torch
    from safetensors import SafetensorError, safe_open

    module = getattr(pipe, COMPONENT)
    expected = {key for key in module.state_dict() if key.startswith(tuple(_PREFIXES))}
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = diffusers_names(handle.keys())
            state = {key: handle.get_tensor(original) for key, original in names.items()}
    except (OSError, SafetensorError) as error:
        raise SingleFileRefused(f"{path.name}: not a readable safetensors file: {error}") from error
    missing, unknown = sorted(expected - state.keys()), sorted(names[k] for k in state.keys() - expected)
    problems = [
        f"{label} {len(keys)} key(s): {_some(keys)}"
        for label, keys in (("lacks", missing), ("has unknown", unknown))
        if keys
    ]
    own = module.state_dict()
    problems += [
        f"{names[key]} is {tuple(tensor.shape)}, the model's is {tuple(own[key].shape)}"
        for key, tensor in state.items()
        if key in own and tensor.shape != own[key].shape
    ][:1]
    if problems:
        raise SingleFileRefused(
            f"{path.name} does not fit the text connectors of its model: it " + "; it ".join(problems)
        )
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor)


def _strip(key: str) -> str:
    while key.startswith(_STRIPPED):
        key = key.removeprefix(next(p for p in _STRIPPED if key.startswith(p)))
    return key


def _inner(key: str) -> str:
    key = "." + key
    for diffusers_name, original in _RENAMES:
        key = key.replace(_dotted(original), _dotted(diffusers_name))
    return key[1:]


def _dotted(name: str) -> str:
    return name if name.startswith(".") else "." + name


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMED_KEYS])
    return shown if len(keys) <= MAX_NAMED_KEYS else f"{shown} and {len(keys) - MAX_NAMED_KEYS} more"
