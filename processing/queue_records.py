"""Records shared by the queue.zip reader and writer: entries, limits and the refusal error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The settings keys whose values name attachment files (WanGP's ATTACHMENT_KEYS).
ATTACHMENT_KEYS: tuple[str, ...] = (
    "image_start",
    "image_end",
    "image_refs",
    "image_guide",
    "image_mask",
    "video_guide",
    "video_guide2",
    "video_mask",
    "video_source",
    "audio_guide",
    "audio_guide2",
    "audio_source",
    "replace_voice_sample",
    "replace_voice_sample2",
    "custom_guide",
)

MANIFEST_NAME = "queue.json"
# A queue.zip may carry the LoRA files its tasks name in activated_loras, at its top level.
LORAS_KEY = "activated_loras"
LORA_SUFFIX = ".safetensors"

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class QueueZipError(ValueError):
    """A queue.zip was refused: malformed, hostile or beyond the limits. Nothing was extracted."""


@dataclass(frozen=True)
class QueueLimits:
    """Bounds a queue.zip must stay within before anything is extracted from it."""

    max_members: int = 1000
    max_total_bytes: int = 2 * GIB
    max_member_bytes: int = 512 * MIB
    # queue.json is parsed in memory: a real queue of 1000 tasks is a few MiB.
    max_manifest_bytes: int = 32 * MIB
    max_compression_ratio: float = 200.0
    # Below this size a high ratio is harmless (and common for small JSON), so it is not checked.
    ratio_check_min_bytes: int = 1 * MIB


@dataclass(frozen=True)
class QueueEntry:
    """One queued task: its id and its settings, attachment names replaced by absolute file paths,
    and the LoRA files the archive carries for it (by the file name activated_loras gives)."""

    id: int | str | None
    params: dict[str, Any] = field(default_factory=dict)
    loras: dict[str, Path] = field(default_factory=dict)
