"""WanGP's guide inputs: a control video (`video_guide`), its mask (`video_mask`), reference
images (`image_refs`) and a control image (`image_guide`), read from settings into files the
pipeline takes.

A model takes the ones its preset lists in `inputs` (VACE, the edit models); given to any other
model they are refused naming the model and the models that take them, never dropped. Which
argument of a pipeline each one feeds, and what WanGP's `video_prompt_type` letters make of them,
is the family's call mapping (models.call_args).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.attachments import AttachmentRefused, Attachments
from models.preset import GUIDE_INPUTS, ModelPreset

# Most reference images a job may name: WanGP's forms take a handful; a list past this is a mistake.
MAX_IMAGE_REFS = 16
_WHAT = {
    "video_guide": "control video",
    "video_mask": "video mask",
    "image_refs": "reference images",
    "image_guide": "control image",
}


@dataclass(frozen=True)
class Guides:
    """The guide files of one job, located; empty where the settings name none."""

    video_guide: Path | None = None
    video_mask: Path | None = None
    image_refs: tuple[Path, ...] = ()
    image_guide: Path | None = None  # a control image (Z-Image ControlNet)


def read_guides(
    given: Mapping[str, object],
    preset: ModelPreset,
    attachments: Attachments,
    takers: Sequence[ModelPreset],
    problems: list[str],
) -> Guides:
    """The files `given` (a settings object's `video_guide`, `video_mask`, `image_refs`,
    `image_guide`) names for `preset`, each located through `attachments`; a problem line per key
    the model does not take (naming the `takers` that do), per file refused, and per value of the
    wrong shape."""
    found: dict[str, list[Path]] = {}
    for key in GUIDE_INPUTS:
        names = _names(key, given.get(key), problems)
        if not names:
            continue
        if key not in preset.inputs:
            problems.append(f"{key}: {_not_taken(key, preset, takers)}")
            continue
        paths = []
        for name in names:
            try:
                paths.append(attachments.locate(name))
            except AttachmentRefused as refused:
                problems.append(f"{key}: {refused}")
        found[key] = paths
    if found.get("video_mask") and not found.get("video_guide") and "video_mask" in preset.inputs:
        problems.append("video_mask: a mask applies to a control video; give video_guide too")
    return Guides(
        video_guide=next(iter(found.get("video_guide", [])), None),
        video_mask=next(iter(found.get("video_mask", [])), None),
        image_refs=tuple(found.get("image_refs", [])),
        image_guide=next(iter(found.get("image_guide", [])), None),
    )


def _names(key: str, value: object, problems: list[str]) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if any(item is not None and not isinstance(item, str) for item in items):
        problems.append(f"{key}: must be a file name or a list of file names")
        return []
    names = [item.strip() for item in items if isinstance(item, str) and item.strip()]
    if key != "image_refs" and len(names) > 1:
        problems.append(f"{key}: {len(names)} files given; WanGP reads one")
        return []
    if len(names) > MAX_IMAGE_REFS:
        problems.append(f"{key}: {len(names)} images given; at most {MAX_IMAGE_REFS}")
        return []
    return names


def _not_taken(key: str, preset: ModelPreset, takers: Sequence[ModelPreset]) -> str:
    models = ", ".join(p.id for p in takers if key in p.inputs and not p.tiny) or "none yet"
    return f"{preset.id} takes no {_WHAT[key]} (models that do: {models})"
