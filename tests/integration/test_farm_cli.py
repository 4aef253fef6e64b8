"""`wanfarm up` refuses what must not start, before starting anything; `wanfarm submit` sends local
attachments with the request, to a farm that reads no paths of its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from controller.api.app import create_app
from controller.auth import KeyRing
from controller.cli import main
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.messages import OBJECT_REF
from gpu_agent.storage import LocalStore

I2V = {"model_type": "i2v", "prompt": "a lighthouse"}  # takes a start image
PNG = b"\x89PNG not really"


@contextmanager
def farm_without_agents(data: Path) -> Iterator[tuple[str, FarmService]]:
    """The farm's API over real HTTP with no Ray and no agents: jobs are stored and stay queued."""
    data.mkdir()
    with JobStore(data / "jobs.db") as store:
        service = FarmService(store, LocalStore(data / "objects"), lambda: [], time.time)
        server = uvicorn.Server(
            uvicorn.Config(create_app(service, KeyRing({}), lambda: []), port=0, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", service
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def test_up_on_a_public_address_without_keys_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_API_KEYS", raising=False)
    assert main(["up", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "refusing to serve 0.0.0.0 without API keys" in capsys.readouterr().err


def test_up_with_an_unknown_declared_gpu_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--declare-gpu", "RTX 9999", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown GPU 'RTX 9999'" in err and "RTX 3060" in err


def test_up_with_a_malformed_key_file_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('[{"key": "k1", "owner": "alice", "role": "boss"}]')
    assert main(["up", "--api-keys", str(keys), "--data-dir", str(tmp_path)]) == 2
    assert "role must be submit or admin, not 'boss'" in capsys.readouterr().err


def test_submit_to_a_farm_that_is_not_there_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "job.json"
    settings.write_text('{"model_type": "wan-tiny"}')
    assert main(["submit", str(settings), "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the farm at http://127.0.0.1:9" in capsys.readouterr().err


def test_submit_sends_a_local_start_image_with_its_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "start.png").write_bytes(PNG)
    (mine / "job.json").write_text(json.dumps(I2V | {"image_start": "start.png"}))
    with farm_without_agents(tmp_path / "farm") as (url, service):
        assert main(["submit", str(mine / "job.json"), "--server", url]) == 0
        job_id = capsys.readouterr().out.split()[0]
        job = service.store.get(job_id)
        assert job is not None
        reference = job.settings["image_start"]
        service.storage.get_file(reference.removeprefix(OBJECT_REF), tmp_path / "stored.png")
    assert (tmp_path / "stored.png").read_bytes() == PNG


def test_settings_posted_as_json_naming_a_host_file_are_refused_with_422(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the controller's own file")
    with farm_without_agents(tmp_path / "farm") as (url, _):
        for path in (str(secret), "/nonexistent/secret"):
            body = {"settings": I2V | {"image_start": path}, "wait_for_capacity": True}
            answer = httpx.post(f"{url}/v1/jobs", json=body)
            assert answer.status_code == 422
            [line] = answer.json()["detail"]
            assert line.startswith("settings: image_start: attachments travel with the request")
        assert httpx.get(f"{url}/v1/jobs").json()["jobs"] == []
