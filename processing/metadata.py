"""WanGP settings metadata: the settings dict as JSON in an MP4 `comment` tag or a PNG iTXt `comment`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processing.riff import read_wav_comment

COMMENT_KEY = "comment"
# WanGP pre-writes a padded placeholder so it can later rewrite the metadata in place; it is not settings.
_WANGP_RESERVED_KEY = "_wangp_metadata_reserved"
# Tags WanGP falls back to when a container has no `comment`.
_VIDEO_COMMENT_TAGS = ("comment", "description")
_SUPPORTED_SUFFIXES = (".mp4", ".png", ".wav")


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    """Serialize settings the way WanGP does (compact JSON, UTF-8 kept); ValueError if not JSON-able."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata is not JSON-serializable: {error}") from error


def decode_metadata(text: str | bytes | None) -> dict[str, Any] | None:
    """Parse a stored comment into a settings dict; None if empty, not a JSON object, or a placeholder."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # WanGP's in-place rewrite pads with spaces, and some tools leave a BOM or trailing NULs.
    payload = text.replace("\ufeff", "").rstrip("\0").strip()
    if not payload:
        return None
    try:
        parsed = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or parsed.get(_WANGP_RESERVED_KEY):
        return None
    return parsed


def _read_mp4_comment(path: Path) -> str | None:
    import av  # here, not at the top: the command line reads JSON without loading codecs

    with av.open(str(path)) as container:
        tags = {str(key).lower(): value for key, value in container.metadata.items()}
    for tag in _VIDEO_COMMENT_TAGS:
        if tags.get(tag):
            return str(tags[tag])
    return None


def _read_png_comment(path: Path) -> str | None:
    from PIL import Image  # here, not at the top: the command line reads JSON without loading PIL

    with Image.open(path) as image:
        if image.format != "PNG":
            raise ValueError(f"{path} is not a PNG file (found {image.format})")
        # `.text` covers tEXt, zTXt and iTXt chunks, also those after the image data.
        value = getattr(image, "text", {}).get(COMMENT_KEY) or image.info.get(COMMENT_KEY)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)


def read_metadata(path: Path) -> dict[str, Any] | None:
    """Return the settings dict stored in an .mp4, .png or .wav file, or None if it carries none."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return decode_metadata(_read_mp4_comment(path))
    if suffix == ".png":
        return decode_metadata(_read_png_comment(path))
    if suffix == ".wav":
        return decode_metadata(read_wav_comment(path))
    raise ValueError(
        f"unsupported file type {path.suffix!r} for {path.name}: metadata is read from "
        f"{' or '.join(_SUPPORTED_SUFFIXES)} files"
    )
