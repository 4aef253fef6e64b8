"""The HTTP layer under attack (issue 13): hostile JSON, unbounded uploads, cross-site requests,
listing sizes, idempotent submits, strict bodies and open event streams, each answered with a 4xx
in the error shape and nothing stored."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from controller.api.app import create_app
from controller.api.guards import StreamLimiter, served_hosts
from controller.auth import KeyRing, Principal, Role
from controller.cli import main
from controller.farm import FarmConfig
from controller.jobs import JobState
from controller.service import FarmService, Submitted
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from models.profiles import Profile
from tests.job_records import new_job
from tests.unit.served_app import serve

T0 = 1_700_000_000.0
KEYS = {"ana-key": Principal("ana", Role.SUBMIT), "bob-key": Principal("bob", Role.SUBMIT)}
ANA = {"Authorization": "Bearer ana-key"}
BOB = {"Authorization": "Bearer bob-key"}
MIB = 1024 * 1024
CHUNK = 64 * 1024


def tiny(**settings: Any) -> dict[str, Any]:
    return {"model_type": "wan-tiny", "prompt": "a fox", "seed": 1, "video_length": 9} | settings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


@pytest.fixture
def make_app(store: JobStore, tmp_path: Path) -> Callable[..., FastAPI]:
    def make(keys: dict[str, Principal] | None = None, **options: Any) -> FastAPI:
        service = FarmService(store, LocalStore(tmp_path / "objects"), list, lambda: T0)
        return create_app(service, KeyRing(KEYS if keys is None else keys), list, **options)

    return make


@pytest.fixture
def http(make_app: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(make_app(), headers=ANA) as client:
        yield client


def stored(store: JobStore) -> list[str]:
    return [job.id for job in store.list_jobs(owner=None, states=None, limit=500, before=None)]


class Answer(Protocol):
    """A response of httpx or of the TestClient (httpx2)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_error(answer: Answer, status: int, words: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "detail", "hint"}
    assert words in " ".join([body["error"], *body["detail"]]), body
    return body


def post_json(http: TestClient, body: bytes, **headers: str) -> Answer:
    return http.post("/v1/jobs", content=body, headers={"Content-Type": "application/json", **headers})


# --- item 3: JSON that made the controller answer 500 --------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested deeper than 64"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
        (json.dumps(tiny()).replace('"seed": 1', '"seed": ' + "9" * 4301).encode(), "4301 digits"),
        (b'{"settings": [{"model_type": "wan-tiny", "n": [-' + b"9" * 5000 + b"]}]}", "5000 digits"),
        (json.dumps(tiny(note=float("nan"))).encode(), "NaN is not JSON"),
        (json.dumps(tiny()).replace('"seed": 1', '"seed": 1e999').encode(), "out of range"),
    ],
    ids=["1000 deep", "65 deep", "4301-digit seed", "5000-digit int in a batch", "NaN", "1e999"],
)
def test_hostile_json_is_refused_with_400_naming_the_problem(
    http: TestClient, store: JobStore, body: bytes, words: str
) -> None:
    assert_error(post_json(http, body), 400, words)
    assert stored(store) == []


def test_json_nested_64_levels_deep_is_still_read(http: TestClient) -> None:
    # Deep but legal: it reaches the settings check, which refuses it as settings, not as JSON.
    answer = post_json(http, b"[" * 64 + b"]" * 64)
    assert answer.status_code == 422, answer.text


# --- item 4: uploads stop being read at their limit ----------------------------------------------


def multipart(size: int, boundary: str = "wanfarm-test") -> tuple[str, Iterator[bytes]]:
    """A multipart body of one `size`-byte file, as a content type and 64 KiB chunks."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="queue.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(size // CHUNK):
            yield b"\0" * CHUNK
        yield f"\r\n--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", chunks()


async def call_asgi(
    app: FastAPI, path: str, headers: dict[str, str], chunks: Iterator[bytes]
) -> tuple[int, bytes, int]:
    """One request straight through ASGI, its body chunked with no length, as a server hands it
    over: (status, body, bytes of the request body the app pulled)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    pulled = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> Message:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"], pulled


def test_a_chunked_upload_past_the_limit_is_refused_once_the_limit_is_read(
    make_app: Callable[..., FastAPI], store: JobStore
) -> None:
    app = make_app()
    app.state.max_archive_bytes = MIB
    content_type, chunks = multipart(3 * MIB)
    headers = {"Host": "testserver", "Content-Type": content_type, "Transfer-Encoding": "chunked", **ANA}
    status, body, pulled = asyncio.run(call_asgi(app, "/v1/queues", headers, chunks))
    assert status == 413 and "exceeds 1 MiB" in json.loads(body)["error"]
    assert pulled <= MIB + CHUNK  # not the 3 MiB sent: the rest is never read, nor spooled to disk
    assert stored(store) == []


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("multipart/form-data", b"--x\r\n", 400, "no boundary"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="file"',
            400,
            "ends",
        ),
        ("multipart/form-data; boundary=x", b"garbage\r\n--y--", 400, "malformed multipart"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n',
            422,
            "no file",
        ),
        ("application/zip", b"PK\x03\x04", 415, "multipart/form-data"),
        ("", b"x", 415, "none"),
    ],
    ids=["no boundary", "truncated", "garbage", "no file", "a bare zip", "no content type"],
)
def test_a_bad_queue_upload_is_refused_in_the_error_shape(
    http: TestClient, store: JobStore, content_type: str, body: bytes, status: int, words: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert_error(http.post("/v1/queues", content=body, headers=headers), status, words)
    assert stored(store) == []


class SlowQueues(FarmService):
    """A service whose queue import blocks until told to go on, as a big archive's copying does."""

    entered = threading.Event()
    proceed = threading.Event()

    def submit_queue(self, *args: Any, **kwargs: Any) -> Submitted:
        self.entered.set()
        self.proceed.wait(timeout=10)
        return Submitted([], [])


def test_a_queue_being_imported_does_not_stall_other_requests(store: JobStore, tmp_path: Path) -> None:
    service = SlowQueues(store, LocalStore(tmp_path / "objects"), list, lambda: T0)
    app = create_app(service, KeyRing(KEYS), list)
    content_type, chunks = multipart(CHUNK)
    with TestClient(app, headers=ANA) as http, ThreadPoolExecutor(2) as pool:
        upload = pool.submit(
            http.post, "/v1/queues", content=b"".join(chunks), headers={"Content-Type": content_type}
        )
        assert service.entered.wait(timeout=10)
        try:
            health = pool.submit(http.get, "/healthz").result(timeout=5)
        finally:
            service.proceed.set()
        assert health.status_code == 200
        assert upload.result(timeout=10).status_code == 201


# --- item 7: cross-site requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"content": json.dumps(tiny()), "headers": {"Content-Type": "text/plain"}},
        {"data": {"model_type": "wan-tiny", "prompt": "x"}},
        {"files": {"settings": ("s.json", json.dumps(tiny()), "application/json")}},
        {"content": json.dumps(tiny())},
    ],
    ids=["text/plain", "a form", "multipart", "no content type"],
)
def test_a_post_that_is_not_json_is_refused_with_415_and_makes_no_job(
    http: TestClient, store: JobStore, content: dict[str, Any]
) -> None:
    assert_error(http.post("/v1/jobs", **content), 415, "expected Content-Type application/json")
    assert stored(store) == []


def test_a_request_for_a_host_the_farm_does_not_serve_is_refused(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(hosts=served_hosts("127.0.0.1"))
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        with TestClient(app, base_url=f"http://{host}", headers=ANA) as client:
            assert_error(client.get("/v1/jobs"), 400, f"does not serve the Host '{host}'")
            assert_error(client.get("/"), 400, "does not serve")
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        with TestClient(app, base_url=f"http://{host}", headers=ANA) as client:
            assert client.get("/v1/jobs").status_code == 200, host


def test_the_served_hosts_follow_the_bound_address_and_the_allowed_names() -> None:
    assert served_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert served_hosts("10.0.0.5", ["Farm.Example:8000"]) == {"10.0.0.5", "farm.example"}
    assert served_hosts("0.0.0.0") is None  # a public bind: any name (its API keys guard it)
    assert served_hosts("10.0.0.5", ["*"]) is None  # behind a proxy that checks hosts itself


def test_wanfarm_up_takes_allowed_hosts_and_cors_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[FarmConfig] = []

    def up_command(config: FarmConfig) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr("controller.cli.farm.up_command", up_command)
    argv = [
        "up",
        "--allowed-host",
        "farm.example",
        "--allowed-host",
        "*",
        "--cors-origin",
        "https://a.example",
    ]
    assert main(argv) == 0
    assert seen[0].allowed_hosts == ("farm.example", "*")
    assert seen[0].cors_origins == ("https://a.example",)


def test_a_trailing_slash_is_a_404_and_no_redirect_echoing_the_host(http: TestClient) -> None:
    answer = http.get("/v1/jobs/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert_error(answer, 404, "no route GET /v1/jobs/")
    assert "location" not in answer.headers


def test_cors_is_off_by_default_and_on_for_a_configured_origin(make_app: Callable[..., FastAPI]) -> None:
    origin = {"Origin": "https://studio.example"}
    with TestClient(make_app(), headers=ANA) as closed:
        assert "access-control-allow-origin" not in closed.get("/v1/jobs", headers=origin).headers
    with TestClient(make_app(cors_origins=["https://studio.example"]), headers=ANA) as open_to_one:
        answer = open_to_one.get("/v1/jobs", headers=origin)
        assert answer.headers["access-control-allow-origin"] == "https://studio.example"
        other = open_to_one.get("/v1/jobs", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_an_open_farm_refuses_writes_from_another_sites_page(
    make_app: Callable[..., FastAPI], store: JobStore
) -> None:
    with TestClient(make_app(keys={}), base_url="http://127.0.0.1:8000") as http:
        # A multipart POST needs no preflight: a page elsewhere could send it if Origin were not read.
        content_type, chunks = multipart(CHUNK)
        upload = http.post(
            "/v1/queues",
            content=b"".join(chunks),
            headers={"Content-Type": content_type, "Origin": "http://evil.example"},
        )
        assert_error(upload, 403, "from the origin 'http://evil.example' is refused")
        assert stored(store) == []
        own_page = {"Origin": "http://127.0.0.1:8000"}
        assert http.post("/v1/jobs", json=tiny(), headers=own_page).status_code == 201


# --- item 8: listings carry summaries ------------------------------------------------------------


def test_a_listing_carries_summaries_and_the_jobs_page_its_settings(
    http: TestClient, store: JobStore
) -> None:
    long_prompt = "a fox " * 20_000  # 120 kB, stored before any prompt cap
    job = new_job(settings=tiny(prompt=long_prompt))
    [record] = store.add_jobs([job], T0)
    listing = http.get("/v1/jobs")
    assert listing.status_code == 200 and len(listing.content) < 2000
    [summary] = listing.json()["jobs"]
    assert summary["id"] == record.id and "settings" not in summary
    assert http.get(f"/v1/jobs/{record.id}").json()["settings"]["prompt"] == long_prompt


# --- item 9: Idempotency-Key ---------------------------------------------------------------------


def test_a_retried_submit_with_the_same_key_answers_the_first_jobs(http: TestClient, store: JobStore) -> None:
    key = {"Idempotency-Key": "5b0c2a4e-retry-me"}
    first = http.post("/v1/jobs", json=[tiny(), tiny(seed=2)], headers=key)
    again = http.post("/v1/jobs", json=[tiny(), tiny(seed=2)], headers=key)
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert len(stored(store)) == 2


def test_a_retried_queue_upload_with_the_same_key_answers_the_first_jobs(
    http: TestClient, store: JobStore, tmp_path: Path
) -> None:
    import zipfile

    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": tiny()}]))
    answers = [
        http.post(
            "/v1/queues",
            files={"file": ("queue.zip", archive.read_bytes(), "application/zip")},
            headers={"Idempotency-Key": "queue-1"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201], answers[0].text
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert answers[0].json()["jobs"][0]["id"] == answers[1].json()["jobs"][0]["id"]
    assert len(stored(store)) == 1


@pytest.mark.parametrize("key", ["", "k" * 201, "tab\there"], ids=["empty", "201 chars", "a tab"])
def test_an_invalid_idempotency_key_is_refused_with_400(http: TestClient, store: JobStore, key: str) -> None:
    answer = http.post("/v1/jobs", json=tiny(), headers={"Idempotency-Key": key})
    assert_error(answer, 400, "Idempotency-Key")
    assert stored(store) == []


# --- item 10: the error shape everywhere, and DELETE of a finished job ---------------------------


def test_starlettes_own_404_and_405_answer_the_error_shape(http: TestClient) -> None:
    assert_error(http.get("/v2/nothing"), 404, "no route")
    refused = assert_error(http.put("/v1/jobs"), 405, "does not take PUT")
    assert http.put("/v1/jobs").headers["allow"] == "GET, POST"
    assert "allowed: GET, POST" in refused["detail"]


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED])
def test_canceling_a_finished_job_is_a_409_naming_its_state(
    http: TestClient, store: JobStore, state: JobState
) -> None:
    [job] = store.add_jobs([new_job(settings=tiny())], T0)
    if state is JobState.CANCELED:
        store.request_cancel(job.id, T0 + 1)
    else:
        store.start_attempt(job.id, "a1", Profile.P3, None, T0 + 1)
        store.finish(job.id, 1, state, None if state is JobState.SUCCEEDED else "boom", T0 + 2)
    assert_error(
        http.delete(f"/v1/jobs/{job.id}"), 409, f"job {job.id} already {state.value}; nothing to cancel"
    )
    assert http.get(f"/v1/jobs/{job.id}").json()["state"] == state.value


def test_canceling_a_queued_job_cancels_it(http: TestClient, store: JobStore) -> None:
    [job] = store.add_jobs([new_job(settings=tiny())], T0)
    answer = http.delete(f"/v1/jobs/{job.id}")
    assert answer.status_code == 200 and answer.json()["state"] == "canceled"


# --- item 11: strict bodies, the explicit form, capped event streams -----------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"settings": tiny(), "wait_for_capacity": "yes"}, "wait_for_capacity"),
        ({"settings": tiny(), "priority": "90"}, "priority"),
        ({"settings": tiny(), "priority": 90.0}, "priority"),
        ({"settings": tiny(), "wait_for_capacity": 1}, "wait_for_capacity"),
    ],
    ids=["yes", "a string priority", "a float priority", "1 for true"],
)
def test_the_explicit_form_is_strict(http: TestClient, store: JobStore, body: object, words: str) -> None:
    assert_error(http.post("/v1/jobs", json=body), 422, words)
    assert stored(store) == []


def test_a_settings_object_with_a_key_named_settings_is_a_settings_object(
    http: TestClient, store: JobStore
) -> None:
    answer = http.post("/v1/jobs", json=tiny(settings={"my": "note"}))
    assert answer.status_code == 201, answer.text
    [job] = answer.json()["jobs"]
    assert job["settings"]["settings"] == {"my": "note"} and job["model"] == "wan-tiny"


def test_event_streams_are_capped_per_owner_and_in_all_and_freed_by_a_disconnect(
    make_app: Callable[..., FastAPI], store: JobStore
) -> None:
    app = make_app()
    app.state.streams = StreamLimiter(per_owner=2, total=3)
    anas = store.add_jobs([new_job("ana", settings=tiny())], T0)[0].id
    bobs = store.add_jobs([new_job("bob", settings=tiny())], T0)[0].id
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        ana = [_open_stream(client, anas, ANA) for _ in range(2)]
        assert all(stream.status_code == 200 for stream in ana)
        refused = _open_stream(client, anas, ANA)
        assert_error(_read(refused), 429, "too many open event streams")
        bob = _open_stream(client, bobs, BOB)
        assert bob.status_code == 200
        assert_error(_read(_open_stream(client, bobs, BOB)), 429, "at most 2 per owner and 3 in all")
        ana[0].close()  # the client goes away: its slot comes back
        _wait_until(lambda: app.state.streams.open_streams("ana") == 1)
        again = _open_stream(client, anas, ANA)
        assert again.status_code == 200
        for stream in (ana[1], bob, again):
            stream.close()
        _wait_until(lambda: app.state.streams.open_streams() == 0)


def _open_stream(client: httpx.Client, job_id: str, headers: dict[str, str]) -> httpx.Response:
    request = client.build_request("GET", f"/v1/jobs/{job_id}/events", headers=headers)
    return client.send(request, stream=True)


def _read(response: httpx.Response) -> httpx.Response:
    response.read()
    response.close()
    return response


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)
