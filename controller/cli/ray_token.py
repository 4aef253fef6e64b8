"""Where `wanfarm join` finds the Ray head's authentication token, in Ray's own order after an
explicit file: --token-file, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token.

The token only ever travels in the environment of the `ray start` it is meant for, never on a
command line, where `ps` shows it to every user of the machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV, TOKEN_PATH_ENV, MODE_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"
HOW_TO_PASS = (
    "the head's token is printed by `ray get-auth-token` on the head (it is its ~/.ray/auth_token); "
    "copy it to this machine and pass it with --token-file FILE, or set $RAY_AUTH_TOKEN or "
    "$RAY_AUTH_TOKEN_PATH"
)


class TokenError(ValueError):
    """A token source was named but holds no token."""


@dataclass(frozen=True)
class RayToken:
    value: str
    source: str  # where it was found, for messages: never the token itself

    def environment(self) -> dict[str, str]:
        """What a Ray process needs to speak to a head that checks tokens."""
        return {MODE_ENV: "token", TOKEN_ENV: self.value}


def find_token(token_file: Path | None, env: Mapping[str, str], home: Path) -> RayToken | None:
    """The first token found; None when no source holds one; TokenError when a source that was
    named explicitly (the file, or $RAY_AUTH_TOKEN_PATH) is missing or empty."""
    if token_file is not None:
        return _read(token_file, str(token_file))
    if env.get(TOKEN_ENV, "").strip():
        return RayToken(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if env.get(TOKEN_PATH_ENV):
        path = Path(env[TOKEN_PATH_ENV]).expanduser()
        return _read(path, f"${TOKEN_PATH_ENV} ({path})")
    default = home / ".ray" / "auth_token"
    return _read(default, str(default)) if default.is_file() else None


def _read(path: Path, source: str) -> RayToken:
    try:
        value = path.read_text().strip()
    except OSError as error:
        raise TokenError(f"cannot read the Ray token from {source}: {error.strerror or error}") from None
    if not value:
        raise TokenError(f"the Ray token file {source} is empty")
    return RayToken(value, source)
