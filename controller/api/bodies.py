"""Request bodies read within limits: JSON (415 unless declared JSON, 413 past its size, 400 when
malformed or hostile) and the one file of a multipart upload, streamed to disk up to its limit."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from controller.service_error import ServiceError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_JSON_BYTES = 1024 * 1024  # a settings batch is text: 1 MiB holds hundreds of jobs
MAX_JSON_DEPTH = 64  # settings nest three or four levels; deeper is an attack on recursion
MAX_INT_DIGITS = 100  # no setting needs more; Python refuses 4,301 digits with a ValueError
MAX_PARTS = 4
JSON_HINT = "send a WanGP settings object or list as JSON"
# The OpenAPI body of a route that takes one multipart file in the field `file`.
FILE_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


async def read_json(request: Request) -> object:
    """The body as JSON: 415 unless its Content-Type is JSON, 413 past MAX_JSON_BYTES, 400 when
    malformed, nested deeper than MAX_JSON_DEPTH, or holding a number JSON cannot carry."""
    media_type = _media_type(request)
    if media_type != "application/json":
        raise ServiceError(
            415,
            f"expected Content-Type application/json, got {media_type or 'none'}",
            hint="send the settings as JSON with Content-Type: application/json",
        )
    body = await _read_limited(request, MAX_JSON_BYTES)
    try:
        value = json.loads(
            body, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError:
        raise ServiceError(
            400, f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels", hint=JSON_HINT
        ) from None
    except ValueError as error:  # also UnicodeDecodeError and the hooks' refusals
        raise ServiceError(400, f"malformed JSON: {error}", hint=JSON_HINT) from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise ServiceError(400, f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels", hint=JSON_HINT)
    return value


async def save_upload(request: Request, dest: Path, limit: int) -> Path:
    """The one file of a multipart/form-data body, written to `dest` as it arrives; 413 as soon as
    the body passes `limit` bytes, whether or not it declared a Content-Length."""
    return (await receive_upload(request, dest, limit)).path


@dataclass(frozen=True)
class Upload:
    """The file of a multipart body as saved, with the name its part gave it."""

    path: Path
    filename: str


async def receive_upload(request: Request, dest: Path, limit: int, hint: str | None = None) -> Upload:
    """As `save_upload`, also keeping the part's file name; `hint` says how to send the file."""
    hint = hint or _UPLOAD_HINT
    boundary = _boundary(request, hint)
    _check_length(request, limit)
    with dest.open("wb") as out:
        part = _FilePart(out, hint)
        try:
            parser = MultipartParser(boundary, part.callbacks())
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise ServiceError(413, f"the upload exceeds {limit / 2**20:g} MiB")
                parser.write(chunk)
            parser.finalize()
        except FormParserError as error:
            raise ServiceError(400, f"malformed multipart body: {error}", hint=hint) from None
    if not part.ended:
        raise ServiceError(400, "malformed multipart body: it ends before its closing boundary")
    if not part.found:
        raise ServiceError(422, "no file in the upload", hint=hint)
    return Upload(dest, part.filename)


_UPLOAD_HINT = "send the queue.zip as the one file field of a multipart/form-data body"


class _FilePart:
    """Callbacks of the streaming parser: the first part with a filename goes to `out`; other
    fields are skipped (their bytes still count against the body's limit)."""

    def __init__(self, out: BinaryIO, hint: str) -> None:
        self.out = out
        self.hint = hint
        self.found = False
        self.filename = ""
        self.ended = False
        self._parts = 0
        self._writing = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ServiceError(400, f"malformed multipart body: more than {MAX_PARTS} parts", hint=self.hint)
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        if b"filename" not in options:
            return
        if self.found:
            raise ServiceError(400, "malformed multipart body: more than one file", hint=self.hint)
        self.found = self._writing = True
        self.filename = options[b"filename"].decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._writing:
            self.out.write(data[start:end])

    def _part_end(self) -> None:
        self._writing = False

    def _end(self) -> None:
        self.ended = True


def _media_type(request: Request) -> str:
    media_type, _ = parse_options_header(request.headers.get("content-type"))
    return media_type.decode("latin-1")


def _boundary(request: Request, hint: str) -> bytes:
    media_type, options = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise ServiceError(
            415,
            f"expected Content-Type multipart/form-data, got {media_type.decode('latin-1') or 'none'}",
            hint=hint,
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise ServiceError(400, "malformed multipart body: no boundary in its Content-Type", hint=hint)
    return boundary


async def _read_limited(request: Request, limit: int) -> bytes:
    _check_length(request, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"the body exceeds {limit // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"the body ({int(declared)} bytes) exceeds the limit of {limit} bytes")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _deeper_than(value: object, limit: int) -> bool:
    # Iterative, so a deep value cannot exhaust the stack here either.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
