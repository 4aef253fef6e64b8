"""The model catalogue: one JSON preset per model under models/presets/, read into typed records.

A preset says what a model is (family, task, diffusers pipeline, where its weights live), what it
weighs (components with byte sizes and dtypes, for the memory estimator and the scheduler), and
which job sizes it accepts (resolutions, frame counts), with the defaults WanGP would apply.
"""

from __future__ import annotations

import json
import os
import re
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
    from models.wangp_definitions import Verdict, WangpDefinition

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
    for folder in _preset_folders():
        for path in sorted(folder.glob("*.json")):
            preset = ModelPreset.model_validate(json.loads(path.read_text()))
            if preset.id != path.stem:
                raise ValueError(f"{path.name}: id {preset.id!r} differs from the file name")
            # The first folder to name an id keeps it: a plugin cannot replace a shipped model.
            presets.setdefault(preset.id, preset)
    return presets


def _preset_folders() -> list[Path]:
    """models/presets, then each installed model family's folder (processing.plugins)."""
    from processing.plugins import model_families

    folders = [PRESETS_DIR.resolve()]
    for family in model_families().values():
        folder = Path(family.presets).resolve()
        if folder not in folders:
            folders.append(folder)
    return folders


@cache
def definitions() -> list[Verdict]:
    """Each WanGP definition (<model_type>.json) in the folder $WANFARM_MODELS names, served or
    refused with the reason; none when it is unset."""
    folder = os.environ.get(MODELS_ENV)
    return definitions_in(Path(folder), _own_presets()) if folder else []


def definitions_in(folder: Path, presets: Mapping[str, ModelPreset]) -> list[Verdict]:
    """The verdict on each definition file of `folder` against the catalogue's `presets`."""
    from models.wangp_definitions import decide, with_references

    parsed, unreadable = _read_folder(folder)
    # A definition may take its files or LoRAs from another one of the folder, by model type.
    resolved = with_references(parsed)
    verdicts = []
    for model_id in sorted({*parsed, *unreadable}):
        verdict = unreadable.get(model_id) or decide(resolved[model_id], presets)
        if verdict.preset is not None and not verdict.catalogue_own and verdict.id in presets:
            verdict = Verdict(model_id, verdict.architecture, None, "its name is a catalogue id")
        verdicts.append(verdict)
    return verdicts


def _read_folder(folder: Path) -> tuple[dict[str, WangpDefinition], dict[str, Verdict]]:
    """The definitions of `folder` by model type, and a refusal for each file that is not one."""
    # Imported here: the key table behind it costs a command's start 50 ms, and only a farm that
    # serves WanGP definitions ($WANFARM_MODELS) reads it.
    from models.wangp_definitions import DefinitionError, Verdict, parse_definition

    if not folder.is_dir():
        raise ValueError(f"${MODELS_ENV}: {folder} is not a folder")
    parsed: dict[str, WangpDefinition] = {}
    unreadable: dict[str, Verdict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            parsed[path.stem] = parse_definition(path.stem, json.loads(path.read_text()))
        except (ValueError, DefinitionError) as error:  # JSONDecodeError is a ValueError
            unreadable[path.stem] = Verdict(path.stem, "", None, f"not a WanGP definition: {error}")
    return parsed, unreadable


class DefinitionRefused(ValueError):
    """A WanGP definition the farm will not add, with the reason."""


class NoModelsFolder(DefinitionRefused):
    """The farm was started without a folder of definitions ($WANFARM_MODELS) to add one to."""


# A definition's model type names its file: letters, digits, '_', '.', '-' (WanGP's ids are so).
MODEL_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def add_definition(model_type: str, data: object) -> ModelPreset:
    """Keep WanGP definition `data` as `<model_type>.json` in the folder $WANFARM_MODELS names and
    serve it, when the farm can (judged with the folder's other definitions, which it may take
    files or LoRAs from); else DefinitionRefused naming why, and nothing is written. The same
    model type again replaces its definition."""
    from models.wangp_definitions import DefinitionError, decide, parse_definition, with_references

    folder = os.environ.get(MODELS_ENV)
    if not folder:
        raise NoModelsFolder(f"this farm has no folder of model definitions: start it with ${MODELS_ENV} set")
    if not MODEL_TYPE.fullmatch(model_type):
        raise DefinitionRefused(
            f"model_type {model_type!r}: 1-64 letters, digits, '_', '.' or '-', from a letter or digit"
        )
    if model_type in _own_presets():
        raise DefinitionRefused(
            f"model_type {model_type!r} is a catalogue id; give the definition a name of its own"
        )
    try:
        new = parse_definition(model_type, data)
    except DefinitionError as error:
        raise DefinitionRefused(str(error)) from None
    parsed, _ = _read_folder(Path(folder))
    verdict = decide(with_references(parsed | {model_type: new})[model_type], _own_presets())
    if verdict.preset is None:
        raise DefinitionRefused(f"{model_type} ({verdict.architecture}): {verdict.reason}")
    target = Path(folder) / f"{model_type}.json"
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    temp.write_text(json.dumps(data, indent=1))
    temp.replace(target)  # whole or not at all: agents read the folder while it changes
    catalogue.cache_clear()
    definitions.cache_clear()
    return verdict.preset


def get_model(name: str) -> ModelPreset:
    """The preset for a catalogue id or a WanGP model_type; UnknownModel names the choices. A
    definition added to the models folder since it was read (POST /v1/models) is read then."""
    found = _lookup(name)
    folder = os.environ.get(MODELS_ENV)
    if found is None and folder and (Path(folder) / f"{name}.json").is_file():
        catalogue.cache_clear()
        definitions.cache_clear()
        found = _lookup(name)
    if found is None:
        raise UnknownModel(
            f"unknown model {name!r}; known ids: {', '.join(catalogue())} (see `wanfarm models`)"
        )
    return found


def _lookup(name: str) -> ModelPreset | None:
    models = catalogue()
    if name in models:
        return models[name]
    return next((preset for preset in models.values() if name in preset.wangp_model_types), None)
