"""queue.zip import (hostile archives refused, nothing written) and export/import round trips."""

from __future__ import annotations

import io
import json
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processing.image import save_png
from processing.queue_zip import (
    QueueEntry,
    QueueLimits,
    QueueZipError,
    export_queue_zip,
    import_queue_zip,
)

PNG_NAME = "task1_image_start_0.png"


def png_bytes(tmp_path: Path, value: int = 90) -> bytes:
    source = tmp_path / f"source_{value}.png"
    save_png(np.full((8, 8, 3), value, np.uint8), source, None)
    data = source.read_bytes()
    source.unlink()
    return data


def settings(**attachments: Any) -> dict[str, Any]:
    return {"model_type": "t2v_1.3B", "prompt": "a red fox", "seed": 3, **attachments}


def manifest(*params: dict[str, Any]) -> bytes:
    return json.dumps([{"id": index, "params": p} for index, p in enumerate(params, start=1)]).encode()


Member = tuple[str | zipfile.ZipInfo, bytes]


def write_zip(path: Path, members: list[Member], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names some cases need
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


class Sandbox:
    """A zip, a work folder that does not exist yet, and a sibling folder nothing may touch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.zip = root / "queue.zip"
        self.work = root / "jobs" / "work"
        self.outside = root / "jobs" / "outside"
        self.outside.mkdir(parents=True)

    def assert_untouched(self) -> None:
        assert list(self.outside.iterdir()) == []
        assert not self.work.exists()
        assert sorted(p.name for p in self.root.iterdir()) == ["jobs", "queue.zip"]
        assert sorted(p.name for p in (self.root / "jobs").iterdir()) == ["outside"]


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# ---------------------------------------------------------------- good archives


def test_good_archive_imports_with_paths_to_real_files(box: Sandbox, tmp_path: Path) -> None:
    image = png_bytes(tmp_path)
    params = settings(image_start=PNG_NAME, image_refs=["ref_a.png", "ref_b.png"], video_guide=None)
    write_zip(
        box.zip,
        [
            ("queue.json", manifest(params)),
            (PNG_NAME, image),
            ("ref_a.png", b"a"),
            ("ref_b.png", b"b"),
            ("unreferenced.bin", b"x" * 100),
        ],
    )
    entries = import_queue_zip(box.zip, box.work)

    assert len(entries) == 1
    entry = entries[0]
    assert entry.id == 1
    start = Path(entry.params["image_start"])
    assert start.is_absolute()
    assert start.parent == box.work.resolve()
    assert start.read_bytes() == image
    assert [Path(p).read_bytes() for p in entry.params["image_refs"]] == [b"a", b"b"]
    assert entry.params["video_guide"] is None
    assert {k: v for k, v in entry.params.items() if k not in ("image_start", "image_refs")} == {
        k: v for k, v in params.items() if k not in ("image_start", "image_refs")
    }
    # Only referenced attachments are extracted, and no staging folder is left behind.
    assert sorted(p.name for p in box.work.iterdir()) == sorted([PNG_NAME, "ref_a.png", "ref_b.png"])
    assert list(box.outside.iterdir()) == []


def test_archive_without_attachments_writes_nothing(box: Sandbox) -> None:
    write_zip(box.zip, [("queue.json", manifest(settings(), settings(image_refs=[])))])
    entries = import_queue_zip(box.zip, box.work)
    assert [e.id for e in entries] == [1, 2]
    assert entries[1].params["image_refs"] == []
    box.assert_untouched()


def test_existing_file_in_work_dir_is_not_overwritten(box: Sandbox, tmp_path: Path) -> None:
    write_zip(box.zip, [("queue.json", manifest(settings(image_start=PNG_NAME))), (PNG_NAME, b"new")])
    box.work.mkdir()
    (box.work / PNG_NAME).write_bytes(b"old")
    with pytest.raises(FileExistsError):
        import_queue_zip(box.zip, box.work)
    assert [p.name for p in box.work.iterdir()] == [PNG_NAME]
    assert (box.work / PNG_NAME).read_bytes() == b"old"


# ---------------------------------------------------------------- hostile archives


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so external_attr carries a file mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def with_queue(params: dict[str, Any], *members: Member) -> list[Member]:
    return [("queue.json", manifest(params)), *members]


GOOD = settings(image_start=PNG_NAME)

# (case id, members, limits or None, regex the message must match)
HOSTILE_CASES: list[tuple[str, list[Member], QueueLimits | None, str]] = [
    ("no queue.json", [(PNG_NAME, b"x")], None, "no queue.json"),
    ("queue.json in a folder", [("sub/queue.json", manifest(GOOD))], None, "no queue.json"),
    ("invalid JSON", [("queue.json", b"{not json")], None, "not valid UTF-8 JSON"),
    ("not UTF-8", [("queue.json", b"\xff\xfe[]")], None, "not valid UTF-8 JSON"),
    ("JSON object", [("queue.json", b'{"params": {}}')], None, "must be a JSON list"),
    ("list of numbers", [("queue.json", b"[1, 2]")], None, "task 0 is int, not an object"),
    ("no params", [("queue.json", b'[{"id": 1}]')], None, "no 'params' object"),
    ("params a list", [("queue.json", b'[{"id": 1, "params": []}]')], None, "no 'params' object"),
    ("bad id", [("queue.json", b'[{"id": [1], "params": {}}]')], None, "id of type list"),
    ("dot-dot", with_queue(GOOD, (PNG_NAME, b"x"), ("../outside/evil.txt", b"x")), None, r"'\.\.'"),
    ("nested dot-dot", with_queue(GOOD, ("a/../../outside/evil.txt", b"x")), None, r"'\.\.'"),
    ("absolute", with_queue(GOOD, ("/tmp/evil.txt", b"x")), None, "absolute path"),
    ("drive letter", with_queue(GOOD, ("C:/evil.txt", b"x")), None, "drive letter"),
    ("backslash", with_queue(GOOD, ("..\\outside\\evil.txt", b"x")), None, "backslash"),
    ("symlink", with_queue(GOOD, (symlink_member(PNG_NAME), b"/etc/passwd")), None, "symbolic link"),
    ("duplicate", with_queue(GOOD, (PNG_NAME, b"x"), (PNG_NAME, b"y")), None, "duplicate member"),
    (
        "case duplicate",
        with_queue(GOOD, (PNG_NAME, b"x"), (PNG_NAME.upper(), b"y")),
        None,
        "duplicate member",
    ),
    (
        "too many members",
        with_queue(GOOD, *[(f"f{i}.bin", b"x") for i in range(5)]),
        QueueLimits(max_members=5),
        "6 members, over the limit of 5",
    ),
    (
        "member too big",
        with_queue(GOOD, (PNG_NAME, b"x" * 2000)),
        QueueLimits(max_member_bytes=1000),
        "over the 1000-byte member limit",
    ),
    (
        "total too big",
        with_queue(GOOD, (PNG_NAME, b"x" * 900), ("b.bin", b"x" * 900), ("c.bin", b"x" * 900)),
        QueueLimits(max_total_bytes=2000),
        "total size limit",
    ),
    (
        "manifest too big",
        [("queue.json", manifest(settings(prompt="p" * 5000)))],
        QueueLimits(max_manifest_bytes=1000),
        "over the 1000-byte limit",
    ),
    (
        "zip bomb",
        with_queue(GOOD, (PNG_NAME, b"x"), ("bomb.bin", bytes(20 * 1024 * 1024))),
        None,
        "zip bomb",
    ),
    ("missing attachment", with_queue(GOOD), None, "'task1_image_start_0.png', which is not in the archive"),
    (
        "missing one of a list",
        with_queue(settings(image_refs=["a.png", "b.png"]), ("a.png", b"a")),
        None,
        "'b.png', which is not in the archive",
    ),
    (
        "reference with dot-dot",
        with_queue(settings(image_start="../outside/x.png")),
        None,
        r"references '\.\./outside/x\.png', which contains a '\.\.'",
    ),
    ("reference absolute", with_queue(settings(video_guide="/etc/passwd")), None, "is an absolute path"),
    (
        "reference with folder",
        with_queue(settings(image_start="sub/x.png"), ("sub/x.png", b"x")),
        None,
        "has a folder part",
    ),
    ("reference not a string", with_queue(settings(image_refs=[5])), None, "holds int 5, not a file name"),
    ("reference a dict", with_queue(settings(audio_guide={"path": "a.wav"})), None, "holds dict"),
]


@pytest.mark.parametrize(
    ("members", "limits", "message"),
    [case[1:] for case in HOSTILE_CASES],
    ids=[case[0] for case in HOSTILE_CASES],
)
def test_hostile_archive_is_refused_and_nothing_is_written(
    box: Sandbox, members: list[Member], limits: QueueLimits | None, message: str
) -> None:
    write_zip(box.zip, members)
    with pytest.raises(QueueZipError, match=message):
        import_queue_zip(box.zip, box.work, limits or QueueLimits())
    box.assert_untouched()


def test_refusal_leaves_an_existing_work_dir_empty(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"x"), ("../outside/evil.txt", b"x")))
    box.work.mkdir()
    with pytest.raises(QueueZipError):
        import_queue_zip(box.zip, box.work)
    assert list(box.work.iterdir()) == []
    assert list(box.outside.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"this is not a zip file at all" * 10, b"PK\x03\x04garbage"])
def test_non_zip_is_refused(box: Sandbox, content: bytes) -> None:
    box.zip.write_bytes(content)
    with pytest.raises(QueueZipError, match=r"not a (valid )?zip file"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()


def test_default_member_limit_is_1000(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(settings(), *[(f"f{i}.bin", b"") for i in range(1000)]))
    with pytest.raises(QueueZipError, match="1001 members, over the limit of 1000"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()


def test_oversized_central_directory_is_refused_before_parsing(box: Sandbox) -> None:
    long_names = [(f"{'n' * 3000}{i}.bin", b"") for i in range(3)]
    write_zip(box.zip, with_queue(settings(), *long_names))
    with pytest.raises(QueueZipError, match="central directory"):
        import_queue_zip(box.zip, box.work, QueueLimits(max_members=2))
    box.assert_untouched()


def patch_header(path: Path, name: str, local_offset: int, central_offset: int, fmt: str, value: int) -> None:
    """Rewrite one field of a member's local header and central-directory entry, as a forger would."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, offset, name_offset in (
        (b"PK\x03\x04", local_offset, 30),
        (b"PK\x01\x02", central_offset, 46),
    ):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_offset : start + name_offset + len(encoded)] == encoded:
                struct.pack_into(fmt, data, start + offset, value)
            start += 4
    path.write_bytes(bytes(data))


def patch_sizes(path: Path, name: str, new_size: int) -> None:
    """Rewrite the uncompressed size a member declares."""
    patch_header(path, name, 22, 24, "<I", new_size)


def test_encrypted_member_is_refused(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"x")))
    patch_header(box.zip, PNG_NAME, 6, 8, "<H", 0x1)  # general-purpose flag bit 0: encrypted
    with pytest.raises(QueueZipError, match="encrypted"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()


@pytest.mark.parametrize(
    ("declared", "compression"),
    [(100, zipfile.ZIP_DEFLATED), (100, zipfile.ZIP_STORED), (50_000, zipfile.ZIP_DEFLATED)],
    ids=["deflated-smaller", "stored-smaller", "deflated-larger"],
)
def test_member_lying_about_its_size_is_caught_while_extracting(
    box: Sandbox, tmp_path: Path, declared: int, compression: int
) -> None:
    real = np.random.default_rng(0).integers(0, 255, 10_000, dtype=np.uint8).tobytes()
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, real)), compression)
    patch_sizes(box.zip, PNG_NAME, declared)
    with pytest.raises(QueueZipError, match=f"member '{PNG_NAME}'"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()


# ---------------------------------------------------------------- export


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    start = sources / "start.png"
    save_png(np.full((8, 8, 3), 10, np.uint8), start, None)
    other = sources / "other.jpg"
    other.write_bytes(b"jpeg bytes")
    clip = sources / "guide.mp4"
    clip.write_bytes(b"mp4 bytes")
    first = settings(image_start=str(start), image_refs=[str(start), other], video_guide=str(clip))
    second = settings(prompt="second", image_end="", audio_guide=None)

    zip_path = tmp_path / "out" / "queue.zip"
    zip_path.parent.mkdir()
    export_queue_zip([first, second], zip_path)
    assert [p.name for p in zip_path.parent.iterdir()] == ["queue.zip"]

    with zipfile.ZipFile(zip_path) as archive:
        stored = json.loads(archive.read("queue.json"))
        names = sorted(archive.namelist())
    assert [task["id"] for task in stored] == [1, 2]
    assert stored[0]["params"]["image_start"] == "task1_image_start_0.png"
    # The same file referenced twice is stored once, under its first name, as WanGP does.
    assert stored[0]["params"]["image_refs"] == ["task1_image_start_0.png", "task1_image_refs_1.jpg"]
    assert stored[0]["params"]["video_guide"] == "task1_video_guide_0.mp4"
    assert names == sorted(
        ["queue.json", "task1_image_start_0.png", "task1_image_refs_1.jpg", "task1_video_guide_0.mp4"]
    )

    work = tmp_path / "work"
    entries = import_queue_zip(zip_path, work)
    assert [e.id for e in entries] == [1, 2]
    imported = entries[0].params
    assert Path(imported["image_start"]).read_bytes() == start.read_bytes()
    assert [Path(p).read_bytes() for p in imported["image_refs"]] == [start.read_bytes(), b"jpeg bytes"]
    assert Path(imported["video_guide"]).read_bytes() == b"mp4 bytes"
    assert entries[1].params == second

    # Imported entries export again (ids kept) and import to the same settings.
    again = tmp_path / "again.zip"
    export_queue_zip(entries, again)
    reimported = import_queue_zip(again, tmp_path / "work2")
    assert [e.id for e in reimported] == [1, 2]
    assert Path(reimported[0].params["image_refs"][1]).read_bytes() == b"jpeg bytes"
    assert reimported[1].params == second


def test_export_keeps_queue_entry_ids(tmp_path: Path) -> None:
    zip_path = tmp_path / "queue.zip"
    export_queue_zip([QueueEntry(id=7, params=settings()), QueueEntry(id="x", params=settings())], zip_path)
    assert [e.id for e in import_queue_zip(zip_path, tmp_path / "work")] == [7, "x"]


@pytest.mark.parametrize(
    ("entries_for", "error", "message"),
    [
        (lambda d: [settings(image_start=str(d / "missing.png"))], FileNotFoundError, "not a file"),
        (lambda d: [settings(image_refs=[3])], ValueError, "not a file path"),
        (lambda d: [settings(), QueueEntry(id=1, params=settings())], ValueError, "repeats task id"),
        (lambda d: [settings(extra=object())], ValueError, "JSON-serializable"),
    ],
    ids=["missing file", "not a path", "duplicate id", "not JSON"],
)
def test_export_refuses_bad_entries_and_writes_nothing(
    tmp_path: Path, entries_for: Callable[[Path], list[Any]], error: type[Exception], message: str
) -> None:
    zip_path = tmp_path / "queue.zip"
    with pytest.raises(error, match=message):
        export_queue_zip(entries_for(tmp_path), zip_path)
    assert list(tmp_path.iterdir()) == []


def add_zip64_end_record(path: Path, declared_directory_size: int | None = None) -> None:
    """Insert a zip64 end record and locator before the end record (as zip64 writers do)."""
    data = path.read_bytes()
    end = len(data) - 22
    assert data[end : end + 4] == b"PK\x05\x06"
    entries, directory_size, directory_offset = struct.unpack_from("<HII", data, end + 10)
    record = b"PK\x06\x06" + struct.pack(
        "<QHHIIQQQQ",
        44,
        45,
        45,
        0,
        0,
        entries,
        entries,
        declared_directory_size if declared_directory_size is not None else directory_size,
        directory_offset,
    )
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, end, 1)
    path.write_bytes(data[:end] + record + locator + data[end:])


def test_zip64_end_record_is_understood(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"png")))
    add_zip64_end_record(box.zip)
    entries = import_queue_zip(box.zip, box.work)
    assert Path(entries[0].params["image_start"]).read_bytes() == b"png"


def test_zip64_end_record_cannot_hide_a_huge_central_directory(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"png")))
    add_zip64_end_record(box.zip, declared_directory_size=10**9)
    with pytest.raises(QueueZipError, match="central directory"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()


def test_failed_extraction_removes_the_folders_it_made(box: Sandbox) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"x" * 100)))
    patch_sizes(box.zip, PNG_NAME, 50)
    deep = box.root / "jobs" / "new" / "deeper" / "work"
    with pytest.raises(QueueZipError, match="Bad CRC"):
        import_queue_zip(box.zip, deep)
    box.assert_untouched()


def test_bytes_are_counted_even_if_zipfile_trusted_a_lying_header(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_zip(box.zip, with_queue(GOOD, (PNG_NAME, b"x" * 100)))
    real_open = zipfile.ZipFile.open

    def inflating_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        member = name.filename if isinstance(name, zipfile.ZipInfo) else name
        if member == PNG_NAME:
            return io.BytesIO(b"x" * 10_000)  # a decompressor yielding more than the header declares
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", inflating_open)
    with pytest.raises(QueueZipError, match="expands past 100 bytes"):
        import_queue_zip(box.zip, box.work)
    box.assert_untouched()
