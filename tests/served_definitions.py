"""WanGP definitions as a test writes them: $WANFARM_MODELS pointed at a folder of its own, and a
definition's weight file served over loopback HTTP for its URLs to name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from models import catalogue as catalogue_module
from tests.unit.loopback_http import Asked, Reply, scripted_server


def _forget_definitions() -> None:
    # The catalogue and the definitions are read once per process; a test's own folder must be re-read.
    for cached in (catalogue_module.catalogue, catalogue_module.definitions):
        cached.cache_clear()


@contextmanager
def definitions_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`folder`, made, as $WANFARM_MODELS while the block runs; the catalogue reads it, then forgets it."""
    folder.mkdir()
    monkeypatch.setenv("WANFARM_MODELS", str(folder))
    _forget_definitions()
    yield folder
    monkeypatch.delenv("WANFARM_MODELS")
    _forget_definitions()


@contextmanager
def served_file(name: str, body: bytes, asked: list[str] | None = None) -> Iterator[str]:
    """A loopback server answering /files/`name` with `body` and 404 to anything else; yields that
    file's URL. Each path requested is appended to `asked` when given."""

    def script(request: Asked) -> Reply:
        if asked is not None:
            asked.append(request.target)
        found = request.target == f"/files/{name}"
        return Reply(200 if found else 404, body if found else b"", "application/octet-stream")

    with scripted_server(script) as base_url:
        yield f"{base_url}/files/{name}"
