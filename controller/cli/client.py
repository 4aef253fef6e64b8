"""The HTTP client of the command line: the same bodies as the server, over httpx."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from controller.schemas import AgentOut, ErrorOut, JobList, JobOut, SubmitOut

DEFAULT_SERVER = "http://127.0.0.1:8000"
ENV_SERVER, ENV_KEY = "WANFARM_SERVER", "WANFARM_API_KEY"
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# A gateway's answer while the controller restarts; the request may or may not have been committed.
RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class FarmError(RuntimeError):
    """The farm refused a request (4xx) or could not be reached; the message is the farm's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FarmClient:
    def __init__(
        self,
        server: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = (server or os.environ.get(ENV_SERVER) or DEFAULT_SERVER).rstrip("/")
        key = api_key or os.environ.get(ENV_KEY)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=self.server, headers=headers, timeout=timeout_s, transport=transport
        )
        self._retry_delays_s = tuple(retry_delays_s)
        self._sleep = sleep

    def submit(self, settings: list[Any], priority: int = 50, wait_for_capacity: bool = False) -> SubmitOut:
        """Submits once: a retry after a lost answer carries the same Idempotency-Key, so the farm
        answers the first submission instead of making the jobs twice."""
        body = {"settings": settings, "priority": priority, "wait_for_capacity": wait_for_capacity}
        return SubmitOut.model_validate(self._submit_once(lambda: {"json": body}, "/v1/jobs", {}))

    def submit_queue(self, archive: Path, priority: int = 50, wait_for_capacity: bool = False) -> SubmitOut:
        """A queue.zip, submitted once as `submit` is (the file is sent again on a retry)."""
        with archive.open("rb") as handle:

            def upload() -> dict[str, Any]:
                handle.seek(0)
                return {"files": {"file": (archive.name, handle, "application/zip")}}

            params = {"priority": priority, "wait_for_capacity": wait_for_capacity}
            answer = self._submit_once(upload, "/v1/queues", params)
        return SubmitOut.model_validate(answer)

    def job(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, states: list[str] | None = None, limit: int = 50, before: str | None = None) -> JobList:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = states
        if before:
            params["before"] = before
        return JobList.model_validate(self._request("GET", "/v1/jobs", params=params))

    def cancel(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._request("DELETE", f"/v1/jobs/{job_id}"))

    def agents(self) -> list[AgentOut]:
        return [AgentOut.model_validate(a) for a in self._request("GET", "/v1/agents")]

    def download(self, url: str, dest: Path) -> Path:
        """An output's URL (absolute, or an API path for local storage) into `dest`."""
        with self._http.stream("GET", url) as response:
            self._check(response)
            with dest.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return dest

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as (kind, data), until it ends."""
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as response:
            self._check(response)
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    yield kind, json.loads(line.removeprefix("data: "))

    def close(self) -> None:
        self._http.close()

    def _submit_once(self, body: Callable[[], dict[str, Any]], path: str, params: dict[str, Any]) -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())}  # one per logical submission, kept on retries
        for delay in self._retry_delays_s:
            try:
                response: httpx.Response | None = self._http.post(
                    path, params=params, headers=headers, **body()
                )
            except RETRY_ERRORS:
                response = None  # lost on the way: perhaps committed, so the retry keeps the key
            if response is not None and response.status_code not in RETRY_STATUSES:
                self._check(response)
                return response.json()
            self._sleep(delay)
        return self._request("POST", path, params=params, headers=headers, **body())

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise FarmError(0, f"cannot reach the farm at {self.server}: {error}") from None
        self._check(response)
        return response.json()

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        try:
            body = ErrorOut.model_validate(response.json())
            lines = [body.error, *body.detail] + ([f"hint: {body.hint}"] if body.hint else [])
            message = "\n  ".join(lines)
        except (ValueError, json.JSONDecodeError):
            message = response.text[:500]
        raise FarmError(response.status_code, f"{response.status_code}: {message}")
