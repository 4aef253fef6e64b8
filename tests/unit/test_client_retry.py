"""The command line's client submits once: a submission whose answer is lost (the connection cut
after the farm committed, or a gateway's 502/503/504 while it restarts) is retried with the same
Idempotency-Key, so the farm answers the first jobs instead of making them twice."""

from __future__ import annotations

import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from controller.api.app import create_app
from controller.auth import KeyRing
from controller.cli.client import FarmClient, FarmError
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from tests.unit.loopback_http import Asked, Reply, scripted_server
from tests.unit.served_app import serve

SETTINGS = {"model_type": "wan-tiny", "prompt": "a fox", "seed": 1, "video_length": 9}


class CuttingProxy:
    """A TCP proxy that forwards the first `cuts` connections' requests to the farm but cuts each
    one as its answer starts, as a controller killed after its commit would; later ones pass."""

    def __init__(self, upstream: str, cuts: int = 1) -> None:
        self._upstream = urlsplit(upstream)
        self._cuts = cuts
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            cut, self._cuts = self._cuts > 0, self._cuts - 1
            upstream = socket.create_connection((self._upstream.hostname or "", self._upstream.port or 80))
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answer, args=(upstream, client, cut), daemon=True).start()

    @staticmethod
    def _answer(upstream: socket.socket, client: socket.socket, cut: bool) -> None:
        if cut:
            upstream.recv(65536)  # the farm has answered, so it has committed
            _hang_up(client, upstream)
        else:
            _pump(upstream, client)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _hang_up(source, sink)


def _hang_up(*ends: socket.socket) -> None:
    # shutdown, not only close: it sends the FIN even while another thread waits in recv.
    for end in ends:
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[str, JobStore]]:
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), list, lambda: 1_700_000_000.0)
        with serve(create_app(service, KeyRing({}), list)) as url:
            yield url, store


def stored(store: JobStore) -> list[str]:
    return [job.id for job in store.list_jobs(owner=None, states=None, limit=500, before=None)]


def test_a_submit_whose_answer_is_cut_is_retried_and_makes_its_jobs_once(
    farm: tuple[str, JobStore],
) -> None:
    url, store = farm
    proxy = CuttingProxy(url, cuts=2)
    client = FarmClient(proxy.url, retry_delays_s=(0.01, 0.01, 0.01))
    try:
        answer = client.submit([SETTINGS, SETTINGS | {"seed": 2}])
    finally:
        client.close()
        proxy.close()
    assert sorted(job.id for job in answer.jobs) == sorted(stored(store))
    assert len(stored(store)) == 2


def test_a_queue_upload_whose_answer_is_cut_is_retried_and_makes_its_jobs_once(
    farm: tuple[str, JobStore], tmp_path: Path
) -> None:
    url, store = farm
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": SETTINGS}]))
    proxy = CuttingProxy(url, cuts=1)
    client = FarmClient(proxy.url, retry_delays_s=(0.01,))
    try:
        answer = client.submit_queue(archive)
    finally:
        client.close()
        proxy.close()
    assert [job.id for job in answer.jobs] == stored(store) and len(answer.jobs) == 1


class Scripted:
    """Answers each submission with the next of `statuses` (None: the connection is dropped before
    any answer) and keeps each one's Idempotency-Key."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.keys: list[str | None] = []

    def __call__(self, asked: Asked) -> Reply | None:
        self.keys.append(asked.headers.get("idempotency-key"))
        status = self.statuses.pop(0)
        if status is None:
            return None
        body: dict[str, Any] = {"jobs": [], "warnings": []} if status == 201 else {"error": f"{status}"}
        return Reply(status, json.dumps(body).encode())


@contextmanager
def scripted_client(script: Scripted, slept: list[float]) -> Iterator[FarmClient]:
    with scripted_server(script) as url, closing(FarmClient(url, sleep=slept.append)) as client:
        yield client


def test_gateway_errors_and_dropped_connections_are_retried_with_the_same_key_and_backoff() -> None:
    script, slept = Scripted(503, None, 502, 504, 201), list[float]()
    with scripted_client(script, slept) as client:
        client.submit([SETTINGS])
    assert len(script.keys) == 5 and len(set(script.keys)) == 1 and script.keys[0]
    assert slept == [0.5, 1.0, 2.0, 4.0]


def test_a_refusal_is_not_retried_and_each_submission_has_its_own_key() -> None:
    script, slept = Scripted(422, 201), list[float]()
    with scripted_client(script, slept) as client:
        with pytest.raises(FarmError) as refused:
            client.submit([SETTINGS])
        assert refused.value.status == 422 and slept == []
        client.submit([SETTINGS])
    assert len(script.keys) == 2 and script.keys[0] != script.keys[1]


def test_a_farm_that_stays_away_is_reported_after_the_last_retry() -> None:
    script, slept = Scripted(None, None, None, None, None), list[float]()
    with scripted_client(script, slept) as client, pytest.raises(FarmError) as unreachable:
        client.submit([SETTINGS])
    assert unreachable.value.status == 0 and "cannot reach the farm" in str(unreachable.value)
    assert len(script.keys) == 5


def test_an_address_where_no_farm_listens_is_named_after_the_retries() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens there
    slept = list[float]()
    client = FarmClient(url, sleep=slept.append)
    with pytest.raises(FarmError) as unreachable:
        client.submit([SETTINGS])
    assert str(unreachable.value).startswith(f"cannot reach the farm at {url}: ")
    assert unreachable.value.status == 0 and slept == [0.5, 1.0, 2.0, 4.0]
