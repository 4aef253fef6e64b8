"""The one exception the service layer raises for a request it refuses; HTTP routers turn it into a
4xx answer (controller/api/errors.py). Its own module, so that what the service uses (uploads,
LoRAs) can raise it without importing the service."""

from __future__ import annotations

from collections.abc import Sequence


class ServiceError(Exception):
    """A request the farm refuses: an HTTP status, what is wrong, and how to fix it."""

    def __init__(self, status: int, error: str, detail: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = list(detail)
        self.hint = hint
