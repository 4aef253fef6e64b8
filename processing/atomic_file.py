"""Write-then-rename, so a half-written file never appears under its final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _create_temp_beside(path: Path) -> Path:
    """Create an empty, uniquely named file in `path`'s folder and return its path."""
    while True:
        # A leading dot and a .part suffix keep globs such as "*.mp4" from picking it up.
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            # 0o666 (then the umask) rather than mkstemp's 0o600: outputs are read by other processes.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; it is renamed onto `path` on a clean exit, removed on error.

    The writer must name the file format explicitly: the temp path ends in ``.part``.
    """
    path = Path(path)
    temp = _create_temp_beside(path)
    try:
        yield temp
        # fsync before the rename, or a crash could leave an empty file under the final name.
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
