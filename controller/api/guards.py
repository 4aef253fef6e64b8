"""What a request must pass before any route: a Host this farm serves (no DNS rebinding), no write
from another origin (no cross-site forms), and a bounded number of open event streams."""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.api.errors import refusal_response
from controller.service_error import ServiceError

ANY_HOST = "*"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def served_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names a farm bound to `bind` answers to; None for any (a wildcard bind, or "*")."""
    names = {host_name(name) for name in extra}
    if ANY_HOST in names or bind in WILDCARD_BINDS:
        return None
    names.add(host_name(bind))
    if is_loopback(bind):
        names.update(LOOPBACK_NAMES)
    return frozenset(names)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """A Host header or name without its port or IPv6 brackets, lower case: "[::1]:80" -> "::1"."""
    host = value.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class RequestGuard:
    """ASGI middleware refusing a request for a Host the farm does not serve and, on an open farm
    (whose writes need no key a browser would have to be given), a write whose Origin is neither
    the farm's own nor an allowed CORS origin: browsers send Origin on cross-site writes."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str] | None,
        origins: Iterable[str] = (),
        check_origin: bool = True,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)
        self.check_origin = check_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await refusal_response(refusal)(scope, receive, send)

    def _refusal(self, scope: Scope) -> ServiceError | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and not self._serves(host_name(host)):
            return ServiceError(
                400,
                f"this farm does not serve the Host {host!r}",
                hint="use the farm's own address, or start it with --allowed-host NAME "
                '(--allowed-host "*" behind a proxy that checks hosts itself)',
            )
        origin = headers.get("origin")
        if not self.check_origin or origin is None or scope["method"] in SAFE_METHODS:
            return None
        if self._same_or_allowed(origin, host):
            return None
        return ServiceError(
            403,
            f"a {scope['method']} from the origin {origin!r} is refused",
            hint="the farm takes writes from its own pages only; allow a site with --cors-origin URL",
        )

    def _serves(self, name: str) -> bool:
        assert self.hosts is not None
        return name in self.hosts or any(
            pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in self.hosts
        )

    def _same_or_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        return origin in self.origins or urlsplit(origin).netloc == host.lower()


class StreamLimiter:
    """At most `per_owner` open event streams per owner and `total` in all; each slot is released
    once, by the callable `acquire` returns, when its stream ends or its client goes away."""

    def __init__(self, per_owner: int = 16, total: int = 256) -> None:
        self.per_owner = per_owner
        self.total = total
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, owner: str) -> Callable[[], None]:
        """A release function for a new slot of `owner`; ServiceError 429 when none is free."""
        with self._lock:
            if self._open[owner] >= self.per_owner or self._open.total() >= self.total:
                raise ServiceError(
                    429,
                    "too many open event streams",
                    [f"at most {self.per_owner} per owner and {self.total} in all"],
                    "close a stream you no longer read, or poll GET /v1/jobs/{id} instead",
                )
            self._open[owner] += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self._open[owner] -= 1

        return release

    def open_streams(self, owner: str | None = None) -> int:
        with self._lock:
            return self._open[owner] if owner is not None else self._open.total()
