"""LoRAs uploaded through `POST /v1/loras` (real HTTP on loopback): stored under their sha256,
listed, refused by name when they are not a plain safetensors file; and a farm agent that does
not hold such a LoRA fetches it from object storage once, verifies it, and renders with it."""

from __future__ import annotations

import hashlib
import http.client
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.loras import store_lora
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.lora_fetch import StoredLoras, lora_key
from gpu_agent.messages import EventKind
from gpu_agent.storage import LocalStore
from models.loras import LoraMismatch
from models.tiny_loras import LoraLayout, save_tiny_lora
from processing.metadata import read_metadata
from tests.job_records import placed_task
from tests.unit.served_app import serve
from tests.unit.test_agent_storage import run_to_the_end
from tests.unit.tiny_agent import SETTINGS, agent

KEY = "k-lora"
LIMIT = 64 * 1024  # the test farm's upload limit; the tiny LoRAs are a few kB
Answer = tuple[int, dict[str, Any]]


def _header(tensors: dict[str, Any]) -> bytes:
    header = json.dumps(tensors).encode()
    return struct.pack("<Q", len(header)) + header


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: [], time.time)
        app = create_app(service, KeyRing({KEY: Principal("ana", Role.SUBMIT)}), lambda: [])
        app.state.max_lora_bytes = LIMIT
        with serve(app) as url:
            yield url, app


@pytest.fixture
def lora(tmp_path: Path) -> Path:
    return save_tiny_lora(tmp_path / "made" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL)


def test_an_upload_is_stored_under_its_sha256_and_listed(
    farm: tuple[str, FastAPI], lora: Path, tmp_path: Path
) -> None:
    url, _ = farm
    status, body = upload(url, "style.safetensors", lora.read_bytes())
    sha256 = hashlib.sha256(lora.read_bytes()).hexdigest()
    assert status == 201, body
    assert body == {"name": "style.safetensors", "sha256": sha256, "size": lora.stat().st_size}
    assert (tmp_path / "objects" / lora_key(sha256, "style.safetensors")).read_bytes() == lora.read_bytes()
    assert request(url, "GET", "/v1/loras") == (200, {"loras": [body]})


def test_the_same_bytes_uploaded_again_answer_the_same(farm: tuple[str, FastAPI], lora: Path) -> None:
    url, _ = farm
    first = upload(url, "style.safetensors", lora.read_bytes())
    again = upload(url, "style.safetensors", lora.read_bytes())
    assert (first[0], again[0]) == (201, 200)
    assert again[1] == first[1]
    assert request(url, "GET", "/v1/loras")[1]["loras"] == [first[1]]


def test_the_list_puts_the_newest_upload_first(farm: tuple[str, FastAPI], tmp_path: Path) -> None:
    url, _ = farm
    old = save_tiny_lora(tmp_path / "a" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL, seed=1)
    new = save_tiny_lora(tmp_path / "b" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL, seed=2)
    _, first = upload(url, "style.safetensors", old.read_bytes())
    time.sleep(0.01)
    _, second = upload(url, "style.safetensors", new.read_bytes())
    assert request(url, "GET", "/v1/loras")[1]["loras"] == [second, first]


@pytest.mark.parametrize(
    ("name", "content", "status", "error"),
    [
        ("../style.safetensors", None, 422, "is not a plain *.safetensors file name"),
        ("sub/style.safetensors", None, 422, "is not a plain *.safetensors file name"),
        ("style.bin", None, 422, "is not a plain *.safetensors file name"),
        (".safetensors", None, 422, "is not a plain *.safetensors file name"),
        ("style.safetensors", b"", 422, "style.safetensors is empty"),
        ("style.safetensors", b"x" * (LIMIT + 1), 413, "exceeds"),
        ("style.safetensors", b"not a safetensors file", 422, "is not a safetensors file"),
        ("style.safetensors", struct.pack("<Q", 2) + b"[]", 422, "its header is not a JSON object"),
        ("style.safetensors", struct.pack("<Q", 5) + b"{oops", 422, "its header is not JSON"),
        ("style.safetensors", _header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}), 422,
         "tensor 'w' has no data_offsets within the file"),
    ],
    ids=["parent", "folder", "not-safetensors-name", "no-stem", "empty", "too-large", "no-header",
         "header-not-object", "header-not-json", "tensor-past-end"],
)  # fmt: skip
def test_a_file_that_is_not_a_plain_safetensors_lora_is_refused_naming_why(
    farm: tuple[str, FastAPI], lora: Path, name: str, content: bytes | None, status: int, error: str
) -> None:
    url, _ = farm
    answer = upload(url, name, lora.read_bytes() if content is None else content)
    assert answer[0] == status, answer
    assert error in answer[1]["error"]
    assert request(url, "GET", "/v1/loras")[1]["loras"] == []


def test_uploading_and_listing_need_a_key(farm: tuple[str, FastAPI], lora: Path) -> None:
    url, _ = farm
    assert upload(url, "style.safetensors", lora.read_bytes(), key=None)[0] == 401
    assert request(url, "GET", "/v1/loras", key=None)[0] == 401


def test_an_agent_renders_a_lora_it_finds_only_in_object_storage_and_downloads_it_once(
    farm: tuple[str, FastAPI],
    lora: Path,
    tmp_path: Path,
    cache_dir: Path,
    temp_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    monkeypatch.delenv("WANFARM_LORAS", raising=False)
    url, _ = farm
    _, uploaded = upload(url, "style.safetensors", lora.read_bytes())
    gets = count_gets(monkeypatch)
    worker = agent(tmp_path, cache_dir)  # no LoRA folder at all
    settings = SETTINGS | {"activated_loras": ["style.safetensors"], "num_inference_steps": 2}
    try:
        first = run_to_the_end(worker, settings=settings, task=placed_task("job-1", settings))
        second = run_to_the_end(worker, settings=settings, task=placed_task("job-2", settings))
    finally:
        worker.workspace.release()

    assert (first.kind, second.kind) == (EventKind.SUCCEEDED, EventKind.SUCCEEDED), (
        first.error,
        second.error,
    )
    for job in ("job-1", "job-2"):
        (output,) = LocalStore(tmp_path / "objects").list(f"jobs/{job}/outputs/")
        metadata = read_metadata(tmp_path / "objects" / output.key)
        assert metadata is not None
        assert [applied["sha256"] for applied in metadata["wanfarm"]["loras"]] == [uploaded["sha256"]]
    assert [key for key in gets if key.startswith("loras/")] == [
        lora_key(uploaded["sha256"], "style.safetensors")
    ]
    assert (cache_dir / "loras" / uploaded["sha256"] / "style.safetensors").read_bytes() == lora.read_bytes()


def test_a_lora_in_no_folder_nor_storage_fails_the_job_naming_the_places_searched(
    tmp_path: Path, cache_dir: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    monkeypatch.delenv("WANFARM_LORAS", raising=False)
    worker = agent(tmp_path, cache_dir, lora_dir=tmp_path / "loras")
    settings = SETTINGS | {"activated_loras": ["missing.safetensors"], "num_inference_steps": 2}
    try:
        end = run_to_the_end(worker, settings=settings)
    finally:
        worker.workspace.release()
    assert end.kind is EventKind.FAILED
    assert "missing.safetensors" in (end.error or "")
    assert str(tmp_path / "loras") in (end.error or "") and "object storage" in (end.error or "")


def test_a_sha256_in_the_entry_picks_that_upload_and_a_bare_name_the_newest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    old = save_tiny_lora(tmp_path / "a" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL, seed=1)
    new = save_tiny_lora(tmp_path / "b" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL, seed=2)
    first = store_lora(store, old, "style.safetensors", now=100.0).lora
    second = store_lora(store, new, "style.safetensors", now=200.0).lora
    source = StoredLoras(store, tmp_path / "cache")

    newest = source.find("style.safetensors")
    exact = source.find(f"{first.sha256}/style.safetensors")
    assert newest is not None and exact is not None
    assert (newest.sha256, newest.path.read_bytes()) == (second.sha256, new.read_bytes())
    assert (exact.sha256, exact.path.read_bytes()) == (first.sha256, old.read_bytes())
    assert source.find(f"{'0' * 64}/style.safetensors") is None
    assert source.find("other.safetensors") is None


def test_a_damaged_stored_lora_is_refused_and_not_cached(tmp_path: Path, lora: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    stored = store_lora(store, lora, "style.safetensors", now=100.0).lora
    (tmp_path / "objects" / stored.key).write_bytes(b"damaged")
    with pytest.raises(LoraMismatch, match="damaged"):
        StoredLoras(store, tmp_path / "cache").find("style.safetensors")
    assert not (tmp_path / "cache" / stored.sha256 / "style.safetensors").exists()


def count_gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys every LocalStore reads from now on, in order."""
    keys: list[str] = []
    get_file = LocalStore.get_file

    def counted(self: LocalStore, key: str, dest: Path) -> None:
        keys.append(key)
        get_file(self, key, dest)

    monkeypatch.setattr(LocalStore, "get_file", counted)
    return keys


def upload(url: str, name: str, content: bytes, key: str | None = KEY) -> Answer:
    boundary = "wanfarm-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return request(url, "POST", "/v1/loras", body, f"multipart/form-data; boundary={boundary}", key)


def request(
    url: str, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
    key: str | None = KEY,
) -> Answer:  # fmt: skip
    parts = urlsplit(url)
    headers = {"Content-Type": content_type} if content_type else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, path, body, headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()
