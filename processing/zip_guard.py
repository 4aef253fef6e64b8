"""Checks that make an untrusted zip safe to read: names, member types, counts, sizes and bomb ratios."""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from processing.queue_records import MIB, QueueLimits, QueueZipError

_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_MAX_ZIP_COMMENT = 65535
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_ZIP64_EOCD_SIZE = 56
# A central-directory entry is 46 bytes plus name, extra field and comment; real ones stay far below this.
_CENTRAL_DIRECTORY_BYTES_PER_MEMBER = 4 * 1024
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 * MIB
# What a corrupt or lying member raises from zipfile and its decompressors.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,  # bz2 reports corrupt data as OSError
)


def _central_directory_size(handle: BinaryIO) -> int | None:
    """The central directory size an end record declares (the larger if zip64 also declares one)."""
    handle.seek(0, 2)
    file_size = handle.tell()
    tail_size = min(file_size, _EOCD_SIZE + _MAX_ZIP_COMMENT)
    tail_start = file_size - tail_size
    handle.seek(tail_start)
    tail = handle.read(tail_size)
    # Same search order as zipfile: a comment-less record at the very end, else the last signature.
    if tail[-_EOCD_SIZE:][:4] == _EOCD_SIGNATURE:
        position = len(tail) - _EOCD_SIZE
    else:
        position = tail.rfind(_EOCD_SIGNATURE)
    if position < 0 or len(tail) - position < _EOCD_SIZE:
        return None
    sizes = [int.from_bytes(tail[position + 12 : position + 16], "little")]
    # zipfile prefers a zip64 record when a locator sits just before the end record: bound that one too.
    locator_at = tail_start + position - _ZIP64_LOCATOR_SIZE
    if locator_at >= _ZIP64_EOCD_SIZE:
        handle.seek(locator_at)
        if handle.read(4) == _ZIP64_LOCATOR_SIGNATURE:
            handle.seek(locator_at - _ZIP64_EOCD_SIZE)
            record = handle.read(_ZIP64_EOCD_SIZE)
            if record[:4] == _ZIP64_EOCD_SIGNATURE:
                sizes.append(int.from_bytes(record[40:48], "little"))
    return max(sizes)


def open_zip(zip_path: Path, limits: QueueLimits) -> zipfile.ZipFile:
    """Open an untrusted zip, refusing non-zips and central directories too big for `max_members`."""
    try:
        with open(zip_path, "rb") as handle:
            directory_size = _central_directory_size(handle)
    except IsADirectoryError as error:
        raise QueueZipError(f"{zip_path.name} is a folder, not a zip file") from error
    if directory_size is None:
        raise QueueZipError(f"{zip_path.name} is not a zip file (no end-of-central-directory record)")
    # zipfile reads and parses the whole central directory up front, so bound it before opening.
    allowed = limits.max_members * _CENTRAL_DIRECTORY_BYTES_PER_MEMBER
    if directory_size > allowed:
        raise QueueZipError(
            f"{zip_path} declares a {directory_size}-byte central directory, more than "
            f"{limits.max_members} members can need ({allowed} bytes)"
        )
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
        raise QueueZipError(f"{zip_path} is not a valid zip file: {error}") from error


def member_name_problem(name: str) -> str | None:
    """Why a member name could land outside the extraction folder (or is otherwise unsafe); None if fine."""
    if not name:
        return "has an empty name"
    if "\\" in name:
        return "contains a backslash (a Windows path separator)"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "starts with a drive letter"
    if ":" in name:
        return "contains a colon (drive letter or alternate data stream)"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "contains control characters"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "contains a '..' component that escapes the extraction folder"
    if any(part in ("", ".") for part in parts):
        return "contains an empty or '.' path component"
    return None


def _member_type_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "is a special file (device, FIFO or socket)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        return f"uses unsupported compression method {info.compress_type}"
    return None


def _size_problem(info: zipfile.ZipInfo, limits: QueueLimits) -> str | None:
    if info.file_size > limits.max_member_bytes:
        return f"is {info.file_size} bytes uncompressed, over the {limits.max_member_bytes}-byte member limit"
    if info.file_size >= limits.ratio_check_min_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            return (
                f"expands {ratio:.0f}:1 ({info.compress_size} -> {info.file_size} bytes), over the "
                f"{limits.max_compression_ratio:.0f}:1 limit (zip bomb?)"
            )
    return None


def check_members(archive: zipfile.ZipFile, limits: QueueLimits) -> dict[str, zipfile.ZipInfo]:
    """Validate every member from the central directory alone; return the regular files by name."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise QueueZipError(f"archive has {len(infos)} members, over the limit of {limits.max_members}")
    files: dict[str, zipfile.ZipInfo] = {}
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        problem = member_name_problem(name) or _member_type_problem(info) or _size_problem(info, limits)
        if problem:
            raise QueueZipError(f"member {name!r} {problem}")
        # Case-folded: on macOS and Windows "A.png" and "a.png" would overwrite each other.
        key = name.removesuffix("/").casefold()
        if key in seen:
            raise QueueZipError(f"duplicate member name {name!r}")
        seen.add(key)
        total += info.file_size
        if total > limits.max_total_bytes:
            raise QueueZipError(
                f"archive expands to more than {limits.max_total_bytes} bytes uncompressed (total size limit)"
            )
        if not info.is_dir():
            files[name] = info
    return files


def copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, write: Callable[[bytes], object], max_bytes: int
) -> int:
    """Stream a member into `write`, counting real bytes: refuse more than its header or `max_bytes` says."""
    cap = min(info.file_size, max_bytes)
    count = 0
    try:
        source = archive.open(info)
    except _READ_ERRORS as error:
        raise QueueZipError(f"member {info.filename!r} could not be opened: {error}") from error
    with source:
        while True:
            try:
                # One byte past the cap is asked for so that a member lying about its size is caught.
                chunk = source.read(min(_CHUNK, cap - count + 1))
            except _READ_ERRORS as error:
                raise QueueZipError(f"member {info.filename!r} could not be read: {error}") from error
            if not chunk:
                break
            count += len(chunk)
            if count > cap:
                raise QueueZipError(
                    f"member {info.filename!r} expands past {cap} bytes while its header "
                    f"says {info.file_size} (zip bomb or corrupt archive)"
                )
            # Outside the read guard: a full disk is the caller's problem, not a bad archive.
            write(chunk)
    if count != info.file_size:
        raise QueueZipError(f"member {info.filename!r} is truncated: {count} of {info.file_size} bytes")
    return count
