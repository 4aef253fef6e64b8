"""The HTTP client of the command line: the same bodies as the server, over the standard library's
http.client (httpx alone takes longer to import than a light command takes to run)."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from controller.schemas import AgentOut, DrainOut, ErrorOut, JobList, JobOut, ReleasedOut, SubmitOut

DEFAULT_SERVER = "http://127.0.0.1:8000"
ENV_SERVER, ENV_KEY = "WANFARM_SERVER", "WANFARM_API_KEY"
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# A gateway's answer while the controller restarts; the request may or may not have been committed.
RETRY_STATUSES = frozenset({502, 503, 504})
# A request lost on the way: refused, reset, timed out, or cut before its answer ended.
RETRY_ERRORS = (OSError, http.client.HTTPException)
CHUNK_BYTES = 1 << 16
# What a path keeps as it is (httpx's choice): reserved characters and escapes already made.
PATH_SAFE = "/%:@!$&'()*+,;=~"
# How HTML5 forms write a file name into a quoted header parameter.
FORM_ESCAPES = {'"': "%22", "\\": "\\\\", "\r": "%0D", "\n": "%0A"}

Params = Mapping[str, int | bool | str | list[str]]


class FarmError(RuntimeError):
    """The farm refused a request (4xx) or could not be reached; the message is the farm's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Body:
    """A request's body: its chunks (made anew for each attempt, so a retry sends it whole), their
    content type and total length."""

    chunks: Callable[[], Iterable[bytes]]
    content_type: str
    length: int


@dataclass(frozen=True)
class _Answer:
    """An answer read whole."""

    status: int
    body: bytes

    def decoded(self) -> Any:
        """The body's JSON; FarmError with the farm's own message when it refused."""
        if not 200 <= self.status < 300:
            raise _refusal(self.status, self.body)
        return json.loads(self.body)


@dataclass(frozen=True)
class _Origin:
    """Where a URL's requests go: scheme, host, port, and the path the API sits under."""

    url: str
    scheme: str
    host: str
    port: int | None
    prefix: str

    @classmethod
    def of(cls, url: str) -> _Origin:
        parts = urlsplit(url)
        return cls(url, parts.scheme.lower(), parts.hostname or "", parts.port, parts.path.rstrip("/"))

    def connection(self, timeout_s: float | None) -> http.client.HTTPConnection:
        """A connection, opened by its first request; FarmError when the URL is not http(s)."""
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s)
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        raise FarmError(
            0, f"cannot reach the farm at {self.url}: give a URL starting with http:// or https://"
        )

    def same_place(self, other: _Origin) -> bool:
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)


class FarmClient:
    """The farm's REST API over one kept-alive connection (one request at a time); a stream
    (events, a download) has a connection of its own."""

    def __init__(
        self,
        server: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.server = (server or os.environ.get(ENV_SERVER) or DEFAULT_SERVER).rstrip("/")
        key = api_key or os.environ.get(ENV_KEY)
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._origin = _Origin.of(self.server)
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._retry_delays_s = tuple(retry_delays_s)
        self._sleep = sleep

    def submit(self, settings: list[Any], priority: int = 50, wait_for_capacity: bool = False) -> SubmitOut:
        """Submits once: a retry after a lost answer carries the same Idempotency-Key, so the farm
        answers the first submission instead of making the jobs twice."""
        body = {"settings": settings, "priority": priority, "wait_for_capacity": wait_for_capacity}
        return SubmitOut.model_validate(self._submit_once("/v1/jobs", {}, _json_body(body)))

    def submit_queue(self, archive: Path, priority: int = 50, wait_for_capacity: bool = False) -> SubmitOut:
        """A queue.zip, submitted once as `submit` is (the file is sent again on a retry)."""
        params = {"priority": priority, "wait_for_capacity": wait_for_capacity}
        return SubmitOut.model_validate(self._submit_once("/v1/queues", params, _file_upload(archive)))

    def job(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, states: list[str] | None = None, limit: int = 50, before: str | None = None) -> JobList:
        params: dict[str, int | bool | str | list[str]] = {"limit": limit}
        if states:
            params["state"] = states
        if before:
            params["before"] = before
        return JobList.model_validate(self._request("GET", "/v1/jobs", params))

    def cancel(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("DELETE", f"/v1/jobs/{job_id}"))

    def agents(self) -> list[AgentOut]:
        return [AgentOut.model_validate(a) for a in self._request("GET", "/v1/agents")]

    def release_agent(self, agent_id: str) -> ReleasedOut:
        """End an agent's quarantine (admin keys only)."""
        path = f"/v1/agents/{quote(agent_id, safe='')}/release"
        return ReleasedOut.model_validate(self._request("POST", path))

    def drain_agent(self, agent_id: str, finish: bool = False) -> DrainOut:
        """Drain an agent (admin keys only): no new work; its job stops with a checkpoint and is
        queued again (or, with `finish`, ends first); then it exits."""
        path = f"/v1/agents/{quote(agent_id, safe='')}/drain"
        return DrainOut.model_validate(self._request("POST", path, body=_json_body({"finish": finish})))

    def download(self, url: str, dest: Path) -> Path:
        """An output's URL (absolute, or an API path for local storage) into `dest`."""
        with self._stream(url, self._timeout_s) as response, dest.open("wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
        return dest

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as (kind, data), until it ends."""
        with self._stream(f"/v1/jobs/{job_id}/events", timeout_s=None) as response:
            kind = ""
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    yield kind, json.loads(line.removeprefix("data: "))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def _submit_once(self, path: str, params: Params, body: _Body) -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())}  # one per logical submission, kept on retries
        for delay in self._retry_delays_s:
            try:
                answer: _Answer | None = self._send("POST", path, params, headers, body)
            except RETRY_ERRORS:
                answer = None  # lost on the way: perhaps committed, so the retry keeps the key
            if answer is not None and answer.status not in RETRY_STATUSES:
                return answer.decoded()
            self._sleep(delay)
        return self._request("POST", path, params, headers, body)

    def _request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
    ) -> Any:
        try:
            answer = self._send(method, path, params or {}, headers or {}, body)
        except RETRY_ERRORS as error:
            raise FarmError(0, f"cannot reach the farm at {self.server}: {error}") from None
        return answer.decoded()

    def _send(
        self, method: str, path: str, params: Params, headers: Mapping[str, str], body: _Body | None
    ) -> _Answer:
        """One request on the kept-alive connection, its answer read whole. Any failure closes the
        connection, so that the next request starts on a new one."""
        connection = self._kept_alive()
        target = self._origin.prefix + quote(path, safe=PATH_SAFE) + _query(params)
        try:
            response = _exchange(connection, method, target, {**self._auth, **headers}, body)
            return _Answer(response.status, response.read())
        except BaseException:
            connection.close()
            raise

    def _kept_alive(self) -> http.client.HTTPConnection:
        """The client's connection, opened again if the farm has closed it since the last answer."""
        if self._connection is None:
            self._connection = self._origin.connection(self._timeout_s)
        elif self._connection.sock is not None and _closed_by_peer(self._connection.sock):
            self._connection.close()  # the next request opens it again
        return self._connection

    @contextmanager
    def _stream(self, url: str, timeout_s: float | None) -> Iterator[http.client.HTTPResponse]:
        """A GET whose answer is read as it arrives, on a connection of its own closed afterwards."""
        parts = urlsplit(url)
        origin = _Origin.of(url) if parts.scheme else self._origin
        farm = origin.same_place(self._origin)
        # The key goes to the farm alone: a presigned URL carries its own, and S3 refuses a second.
        headers = self._auth if farm else {}
        path = quote(parts.path or "/", safe=PATH_SAFE) + (f"?{parts.query}" if parts.query else "")
        target = path if parts.scheme else self._origin.prefix + path  # an API path is the farm's
        connection = origin.connection(timeout_s)
        try:
            try:
                response = _exchange(connection, "GET", target, headers, None)
            except RETRY_ERRORS as error:
                where = f"the farm at {self.server}" if farm else parts.netloc
                raise FarmError(0, f"cannot reach {where}: {error}") from None
            if not 200 <= response.status < 300:
                raise _refusal(response.status, response.read())
            yield response
        finally:
            connection.close()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: _Body | None,
) -> http.client.HTTPResponse:
    """Sends a request and reads its answer's head. A farm may answer (413) and close before the
    body has all been sent: that answer is still read, as browsers and httpx do."""
    if body is None:
        connection.request(method, target, headers=dict(headers))
        return connection.getresponse()
    sized = {**headers, "Content-Type": body.content_type, "Content-Length": str(body.length)}
    try:
        connection.request(method, target, body=body.chunks(), headers=sized)
    except OSError as sending:
        if connection.sock is None:  # it never connected
            raise
        try:
            return connection.getresponse()
        except RETRY_ERRORS:
            raise sending from None
    return connection.getresponse()


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept-alive socket with something to read has been closed (or broken) by the farm."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _query(params: Params) -> str:
    """`?limit=50&state=a&state=b`: a list as repeated keys, booleans as true/false."""
    pairs = [
        (name, str(v).lower() if isinstance(v, bool) else str(v))
        for name, value in params.items()
        for v in (value if isinstance(value, list) else [value])
    ]
    return f"?{urlencode(pairs)}" if pairs else ""


def _json_body(value: object) -> _Body:
    data = json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    return _Body(lambda: (data,), "application/json", len(data))


def _file_upload(archive: Path) -> _Body:
    """`archive` as the one file field ("file") of a multipart/form-data body, read as it is sent."""
    boundary = uuid.uuid4().hex
    filename = "".join(FORM_ESCAPES.get(c, c) for c in archive.name)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = archive.stat().st_size

    def chunks() -> Iterator[bytes]:
        yield head
        with archive.open("rb") as file:
            while block := file.read(CHUNK_BYTES):
                yield block
        yield tail

    return _Body(chunks, f"multipart/form-data; boundary={boundary}", len(head) + size + len(tail))


def _refusal(status: int, body: bytes) -> FarmError:
    """The farm's ErrorOut as lines ("error\\n  detail\\n  hint: ..."), else the start of its answer."""
    try:
        error = ErrorOut.model_validate(json.loads(body))
        lines = [error.error, *error.detail] + ([f"hint: {error.hint}"] if error.hint else [])
        message = "\n  ".join(lines)
    except ValueError:  # not JSON, or not an ErrorOut
        message = body.decode(errors="replace")[:500]
    return FarmError(status, f"{status}: {message}")
