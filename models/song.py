"""What ACE-Step conditions a song on besides its lyrics, with WanGP's defaults (Wan2GP 8681e9f7
models/TTS/ace_step_handler.py): the record a generation request carries (models.ace_step_call
reads it from the settings and builds the call)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BPM = 120
DEFAULT_TIMESIGNATURE = 2
DEFAULT_KEYSCALE = "C major"
DEFAULT_LANGUAGE = "unknown"


@dataclass(frozen=True)
class Song:
    """What ACE-Step conditions a song on besides its lyrics (the job's prompt)."""

    caption: str  # WanGP's alt_prompt: style, genre, instruments, mood
    bpm: int = DEFAULT_BPM
    keyscale: str = DEFAULT_KEYSCALE
    timesignature: int = DEFAULT_TIMESIGNATURE
    language: str = DEFAULT_LANGUAGE
