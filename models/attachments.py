"""Which files a settings object may name (image_start and the like), and where they are found:
a choice of whoever reads the settings. Kept apart from the settings' schema so that reading
settings files (the command line) does not load pydantic."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Where a settings object sent without its files must put them instead.
SEND_ATTACHMENTS = (
    "attachments travel with the request: submit a queue.zip to POST /v1/queues; "
    "`wanfarm submit` builds one from local files"
)


class AttachmentRefused(ValueError):
    """A file a settings object names that may not be read here; the message says why."""


@dataclass(frozen=True)
class Attachments:
    """Which files a settings object may name: an explicit choice of whoever reads the settings.

    `folder` is where relative names are found (None: the settings may name no file at all);
    `confined` keeps every name inside `folder`, symlinks resolved.
    """

    folder: Path | None
    confined: bool = True

    @classmethod
    def refused(cls) -> Attachments:
        """Settings that came without their files (JSON over HTTP): naming a file is an error."""
        return cls(None)

    @classmethod
    def inside(cls, folder: Path) -> Attachments:
        """Files that came with the settings, extracted into `folder` (a queue.zip, an agent's inputs)."""
        return cls(folder, confined=True)

    @classmethod
    def local(cls, folder: Path) -> Attachments:
        """The user's own machine (`wanfarm render`): any path they can read, relative to `folder`."""
        return cls(folder, confined=False)

    def locate(self, name: str) -> Path:
        """The file `name` stands for; AttachmentRefused when it may not be read or is missing."""
        if self.folder is None:
            raise AttachmentRefused(SEND_ATTACHMENTS)
        if not self.confined:
            path = Path(name) if Path(name).is_absolute() else self.folder / name
        else:
            path = self._inside(name, self.folder)
        if not path.is_file():
            raise AttachmentRefused(f"file {name!r} not found (looked in {self.folder})")
        return path

    @staticmethod
    def _inside(name: str, folder: Path) -> Path:
        root = folder.resolve()
        # Judged on the name first, so a path outside is refused without being looked at.
        if not Path(os.path.normpath(root / name)).is_relative_to(root):
            raise AttachmentRefused(f"{name!r} is outside the folder of the files sent with the settings")
        try:
            path = (root / name).resolve()
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            raise AttachmentRefused(f"{name!r} is not a usable file name") from None
        if not path.is_relative_to(root):
            raise AttachmentRefused(f"{name!r} leads outside the folder of the files sent with the settings")
        return path
