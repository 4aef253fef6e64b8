"""API keys: `Authorization: Bearer KEY`, each key with an owner and a role (submit or admin).

Keys come from a JSON file (`[{"key": ..., "owner": ..., "role": "submit"|"admin"}]`) or the
WANFARM_API_KEYS variable (`key:owner:role,...`). With no keys at all the farm is open, as the
embedded default on loopback; `wanfarm up` refuses that on any other address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

ENV_KEYS = "WANFARM_API_KEYS"


class Role(StrEnum):
    SUBMIT = "submit"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: sees and cancels their own jobs, or all of them as admin."""

    owner: str
    role: Role

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.owner


ANONYMOUS = Principal("local", Role.ADMIN)


class KeyConfigError(ValueError):
    """A key file or variable that cannot be used; the message says which entry and why."""


class KeyRing:
    def __init__(self, keys: dict[str, Principal]) -> None:
        # Compared by digest so the lookup does not leak key prefixes through timing.
        self._by_digest = {_digest(key): who for key, who in keys.items()}

    @property
    def open(self) -> bool:
        return not self._by_digest

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller of an Authorization header; None when the key is missing or wrong."""
        if self.open:
            return ANONYMOUS
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        wanted = _digest(key.strip())
        for digest, principal in self._by_digest.items():
            if hmac.compare_digest(digest, wanted):
                return principal
        return None

    @classmethod
    def load(cls, path: Path | None = None) -> KeyRing:
        """Keys from `path` when given, else from $WANFARM_API_KEYS, else none (open)."""
        if path is not None:
            return cls(_from_file(path))
        return cls(_from_env(os.environ.get(ENV_KEYS, "")))


def _from_file(path: Path) -> dict[str, Principal]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise KeyConfigError(f"{path}: cannot read API keys: {error}") from None
    if not isinstance(rows, list):
        raise KeyConfigError(f'{path}: expected a JSON list of {{"key", "owner", "role"}} objects')
    keys: dict[str, Principal] = {}
    for index, row in enumerate(rows):
        where = f"{path}[{index}]"
        if not isinstance(row, dict):
            raise KeyConfigError(f'{where}: expected an object {{"key", "owner", "role"}}')
        key, owner = row.get("key"), row.get("owner")
        if not (isinstance(key, str) and key and isinstance(owner, str) and owner):
            raise KeyConfigError(f"{where}: key and owner must be non-empty strings")
        _add(keys, key, Principal(owner, _role(row.get("role", Role.SUBMIT.value), where)), where)
    return keys


def _from_env(value: str) -> dict[str, Principal]:
    keys: dict[str, Principal] = {}
    for index, item in enumerate(part for part in value.split(",") if part.strip()):
        where = f"{ENV_KEYS} entry {index + 1}"
        fields = [field.strip() for field in item.split(":")]
        # Exactly key:owner or key:owner:role: an extra field is a typo, never ignored.
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            raise KeyConfigError(f"{where}: expected key:owner[:role]")
        role = fields[2] if len(fields) == 3 else Role.SUBMIT.value
        _add(keys, fields[0], Principal(fields[1], _role(role, where)), where)
    return keys


def _add(keys: dict[str, Principal], key: str, principal: Principal, where: str) -> None:
    # A second entry would silently replace the first owner (or role) of the same key.
    if key in keys:
        raise KeyConfigError(f"{where}: this key is given twice")
    keys[key] = principal


def _role(value: object, where: str) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise KeyConfigError(f"{where}: role must be submit or admin, not {value!r}") from None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
