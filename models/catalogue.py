"""The model catalogue: one JSON preset per model under models/presets/, read into typed records.

A preset says what a model is (family, task, diffusers pipeline, where its weights live), what it
weighs (components with byte sizes and dtypes, for the memory estimator and the scheduler), and
which job sizes it accepts (resolutions, frame counts), with the defaults WanGP would apply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from models.preset import (
    DTYPE_BYTES,
    Component,
    Defaults,
    FrameRule,
    Latent,
    ModelPreset,
    Output,
    Role,
    SizeRule,
    Task,
)

if TYPE_CHECKING:
    from models.wangp_definitions import Verdict

# The records live in models.preset; importers of the catalogue find them here too.
__all__ = [
    "DTYPE_BYTES",
    "Component",
    "Defaults",
    "FrameRule",
    "Latent",
    "ModelPreset",
    "Output",
    "Role",
    "SizeRule",
    "Task",
    "UnknownModel",
    "catalogue",
    "definitions",
    "definitions_in",
    "get_model",
]

PRESETS_DIR = Path(__file__).parent / "presets"
MODELS_ENV = "WANFARM_MODELS"  # a folder of WanGP model definitions served beside the presets


class UnknownModel(LookupError):
    """A model id or WanGP model_type that the catalogue does not hold."""


@cache
def catalogue() -> dict[str, ModelPreset]:
    """All presets by id, read once: models/presets/, then the WanGP definitions the farm serves
    from $WANFARM_MODELS (after, so a WanGP model_type finds the catalogue's own model first)."""
    presets = dict(_own_presets())
    for verdict in definitions():
        if verdict.preset is not None and not verdict.catalogue_own:
            presets[verdict.id] = verdict.preset
    return presets


@cache
def _own_presets() -> dict[str, ModelPreset]:
    presets: dict[str, ModelPreset] = {}
    for path in sorted(PRESETS_DIR.glob("*.json")):
        preset = ModelPreset.model_validate(json.loads(path.read_text()))
        if preset.id != path.stem:
            raise ValueError(f"{path.name}: id {preset.id!r} differs from the file name")
        presets[preset.id] = preset
    return presets


@cache
def definitions() -> list[Verdict]:
    """Each WanGP definition (<model_type>.json) in the folder $WANFARM_MODELS names, served or
    refused with the reason; none when it is unset."""
    folder = os.environ.get(MODELS_ENV)
    return definitions_in(Path(folder), _own_presets()) if folder else []


def definitions_in(folder: Path, presets: Mapping[str, ModelPreset]) -> list[Verdict]:
    """The verdict on each definition file of `folder` against the catalogue's `presets`."""
    # Imported here: the key table behind it costs a command's start 50 ms, and only a farm that
    # serves WanGP definitions ($WANFARM_MODELS) reads it.
    from models.wangp_definitions import (
        DefinitionError,
        Verdict,
        WangpDefinition,
        decide,
        parse_definition,
        with_references,
    )

    if not folder.is_dir():
        raise ValueError(f"${MODELS_ENV}: {folder} is not a folder")
    parsed: dict[str, WangpDefinition] = {}
    unreadable: dict[str, Verdict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            parsed[path.stem] = parse_definition(path.stem, json.loads(path.read_text()))
        except (ValueError, DefinitionError) as error:  # JSONDecodeError is a ValueError
            unreadable[path.stem] = Verdict(path.stem, "", None, f"not a WanGP definition: {error}")
    # A definition may take its files or LoRAs from another one of the folder, by model type.
    resolved = with_references(parsed)
    verdicts = []
    for model_id in sorted({*parsed, *unreadable}):
        verdict = unreadable.get(model_id) or decide(resolved[model_id], presets)
        if verdict.preset is not None and not verdict.catalogue_own and verdict.id in presets:
            verdict = Verdict(model_id, verdict.architecture, None, "its name is a catalogue id")
        verdicts.append(verdict)
    return verdicts


def get_model(name: str) -> ModelPreset:
    """The preset for a catalogue id or a WanGP model_type; UnknownModel names the choices."""
    models = catalogue()
    if name in models:
        return models[name]
    for preset in models.values():
        if name in preset.wangp_model_types:
            return preset
    raise UnknownModel(f"unknown model {name!r}; known ids: {', '.join(models)} (see `wanfarm models`)")
