"""Where LoRAs come from besides a node's folder: a queue.zip that carries them (stored as uploads at
submit, all or none; rendered locally by `wanfarm render`), a Hugging Face URL (fetched on the
agent with huggingface_hub), and their removal (`DELETE /v1/loras/{name}`); and the agent's LoRA
cache, kept within its byte budget, least recently used first."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli import main
from controller.cli.exits import EXIT_INVALID, EXIT_OK
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.lora_fetch import RECENT_USE_S, CachedFile, HubLoras, LoraCache, lora_key, over_budget
from gpu_agent.messages import EventKind
from gpu_agent.storage import LocalStore
from models.loras import LoraNotFound, held_key
from processing.metadata import read_metadata
from tests.declared_agents import declared_agent
from tests.job_records import placed_task
from tests.unit import test_lora_upload
from tests.unit.served_app import serve
from tests.unit.test_agent_storage import run_to_the_end
from tests.unit.test_lora_upload import request
from tests.unit.tiny_agent import SETTINGS, agent

ADMIN = "k-admin"
SUBMIT = "k-submit"
TASK = SETTINGS | {"num_inference_steps": 2}
# WanGP writes hub LoRAs in this form (deepbeepmeep/Wan2GP 8681e9f7, defaults/*.json "loras").
HUB_URL = "https://huggingface.co/wanfarm-test/tiny-loras/resolve/main/styles/hub_style.safetensors"


lora = test_lora_upload.lora  # the same tiny LoRA fixture


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[str, JobStore]]:
    """A served farm whose pool is one idle RTX 4090 that holds no LoRA."""
    keys = KeyRing({ADMIN: Principal("root", Role.ADMIN), SUBMIT: Principal("ana", Role.SUBMIT)})
    pool = [declared_agent("RTX 4090", "n1-gpu0")]
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: pool, time.time)
        with serve(create_app(service, keys, lambda: [])) as url:
            yield url, store


def test_a_lora_carried_by_a_queue_zip_is_stored_for_every_agent_and_weighed_for_the_job(
    farm: tuple[str, JobStore], lora: Path, tmp_path: Path
) -> None:
    url, store = farm
    archive = carrying_style(tmp_path, lora)
    status, body = submit_queue(url, archive)
    assert status == 201, body
    sha256 = hashlib.sha256(lora.read_bytes()).hexdigest()
    listed = request(url, "GET", "/v1/loras", key=SUBMIT)[1]["loras"]
    assert listed == [{"name": "style.safetensors", "sha256": sha256, "size": lora.stat().st_size}]
    assert (tmp_path / "objects" / lora_key(sha256, "style.safetensors")).read_bytes() == lora.read_bytes()
    [queued] = store.queued_jobs([body["jobs"][0]["id"]])
    assert [(need.name, need.sha256, need.bytes) for need in queued.loras] == [
        ("style.safetensors", sha256, lora.stat().st_size)
    ]


def test_a_queue_zip_naming_a_lora_found_nowhere_is_refused_naming_it_and_stores_nothing(
    farm: tuple[str, JobStore], lora: Path, tmp_path: Path
) -> None:
    url, store = farm
    task = TASK | {"activated_loras": ["style.safetensors", "missing.safetensors"]}
    status, body = submit_queue(url, queue_zip(tmp_path, [task], {"style.safetensors": lora}))
    assert status == 422, body
    assert any("'missing.safetensors' is not in the queue.zip, not uploaded" in d for d in body["detail"])
    assert request(url, "GET", "/v1/loras", key=SUBMIT)[1]["loras"] == []
    assert store.queue_ids(10) == []
    assert not (tmp_path / "objects").exists() or not any((tmp_path / "objects").rglob("*.safetensors*"))


def test_a_carried_file_that_is_no_safetensors_is_refused_before_any_is_stored(
    farm: tuple[str, JobStore], lora: Path, tmp_path: Path
) -> None:
    url, store = farm
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    task = TASK | {"activated_loras": ["a_style.safetensors", "broken.safetensors"]}
    archive = queue_zip(tmp_path, [task], {"a_style.safetensors": lora, "broken.safetensors": broken})
    status, body = submit_queue(url, archive)
    assert status == 422, body
    assert "broken.safetensors is not a safetensors file" in body["error"]
    assert request(url, "GET", "/v1/loras", key=SUBMIT)[1]["loras"] == []
    assert store.queue_ids(10) == []


def test_deleting_a_lora_needs_an_admin_key_and_is_refused_while_a_queued_job_names_it(
    farm: tuple[str, JobStore], lora: Path, tmp_path: Path
) -> None:
    url, _ = farm
    archive = carrying_style(tmp_path, lora)
    [job] = submit_queue(url, archive)[1]["jobs"]
    path = "/v1/loras/style.safetensors"

    assert request(url, "DELETE", path, key=SUBMIT)[0] == 403
    status, body = request(url, "DELETE", path, key=ADMIN)
    assert status == 409 and job["id"] in body["error"], body
    assert request(url, "DELETE", "/v1/loras/other.safetensors", key=ADMIN)[0] == 404

    assert request(url, "DELETE", f"/v1/jobs/{job['id']}", key=ADMIN)[0] == 200  # canceled
    status, body = request(url, "DELETE", path, key=ADMIN)
    assert status == 200, body
    assert [lora["name"] for lora in body["loras"]] == ["style.safetensors"]
    assert request(url, "GET", "/v1/loras", key=SUBMIT)[1]["loras"] == []
    assert not any(p.is_file() for p in (tmp_path / "objects" / "loras").rglob("*"))  # markers too
    assert request(url, "DELETE", path, key=ADMIN)[0] == 404


def test_wanfarm_render_renders_a_queue_zip_s_lora_and_refuses_one_found_nowhere(
    tmp_path: Path, cache_dir: Path, lora: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    carried = carrying_style(tmp_path, lora)
    out = tmp_path / "out"
    assert main(["render", str(carried), "--cache", str(cache_dir), "--out", str(out)]) == EXIT_OK
    [output] = [path for path in out.iterdir() if path.suffix == ".png"]
    metadata = read_metadata(output)
    assert metadata is not None
    sha256 = hashlib.sha256(lora.read_bytes()).hexdigest()
    assert [applied["sha256"] for applied in metadata["wanfarm"]["loras"]] == [sha256]

    missing = queue_zip(tmp_path / "b", [TASK | {"activated_loras": ["missing.safetensors"]}], {})
    capsys.readouterr()
    command = ["render", str(missing), "--cache", str(cache_dir), "--out", str(tmp_path / "out2")]
    assert main(command) == EXIT_INVALID
    assert "'missing.safetensors' is found nowhere" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_an_agent_fetches_a_hugging_face_lora_with_huggingface_hub_and_renders_with_it(
    tmp_path: Path, cache_dir: Path, temp_dir: Path, lora: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The offline path of huggingface_hub: no hub is reachable here, so the hub's own cache layout
    # is laid out by hand (refs/, snapshots/, blobs/) and hf_hub_download resolves the URL from it.
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    monkeypatch.delenv("WANFARM_LORAS", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = seed_hub_cache(
        cache_dir / "loras" / "hf", "wanfarm-test/tiny-loras", "styles/hub_style.safetensors", lora
    )
    worker = agent(tmp_path, cache_dir)
    settings = TASK | {"activated_loras": [HUB_URL]}
    try:
        end = run_to_the_end(worker, settings=settings, task=placed_task("job-hub", settings))
        held = worker.inventory().loras
    finally:
        worker.workspace.release()
        shutil.rmtree(repo)  # the weights cache is the session's
    assert end.kind is EventKind.SUCCEEDED, end.error
    sha256 = hashlib.sha256(lora.read_bytes()).hexdigest()
    (output,) = LocalStore(tmp_path / "objects").list("jobs/job-hub/outputs/")
    metadata = read_metadata(tmp_path / "objects" / output.key)
    assert metadata is not None
    assert [(a["name"], a["sha256"]) for a in metadata["wanfarm"]["loras"]] == [(HUB_URL, sha256)]
    assert held_key("hub_style.safetensors", sha256) in held


def test_a_hub_file_the_cache_lacks_offline_is_refused_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        LoraNotFound, match=r"hub_style\.safetensors' could not be fetched from the Hugging Face hub"
    ):
        HubLoras(LoraCache(tmp_path / "loras")).find(HUB_URL)
    assert HubLoras(LoraCache(tmp_path / "loras")).find("style.safetensors") is None  # not a hub URL


def test_the_lora_cache_evicts_the_least_recently_used_files_beyond_its_budget(tmp_path: Path) -> None:
    cache = LoraCache(tmp_path / "loras", budget_bytes=250)
    now = time.time()
    paths = {}
    for age, name, sha256 in ((3000, "old", "a" * 64), (2000, "middle", "b" * 64), (1000, "newer", "c" * 64)):
        path = tmp_path / "loras" / sha256 / f"{name}.safetensors"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age, now - age))
        paths[name] = path
    cache.used(paths["old"])  # used now: the least recently used is "middle"
    assert cache.trim(now=now) == [paths["middle"].resolve()]
    assert sorted(p.name for p in (tmp_path / "loras").rglob("*.safetensors")) == [
        "newer.safetensors",
        "old.safetensors",
    ]
    assert cache.held() == (held_key("newer.safetensors", "c" * 64), held_key("old.safetensors", "a" * 64))


def test_the_budget_spares_the_file_kept_and_files_used_lately_by_other_agents() -> None:
    now = 100_000.0
    files = [
        CachedFile(Path("/c/a"), 100, now - 5000),
        CachedFile(Path("/c/b"), 100, now - RECENT_USE_S / 2),  # another agent of the node just took it
        CachedFile(Path("/c/c"), 100, now - 4000),
    ]
    assert over_budget(files, 150, {Path("/c/a")}, now) == [Path("/c/c")]
    assert over_budget(files, 300, set(), now) == []


def seed_hub_cache(root: Path, repo_id: str, filename: str, source: Path) -> Path:
    """The hub cache's layout for one file at revision main, as huggingface_hub writes it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "blobs").mkdir(parents=True)
    shutil.copy(source, repo / "blobs" / sha256)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    pointer = repo / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True)
    pointer.symlink_to(os.path.relpath(repo / "blobs" / sha256, pointer.parent))
    return repo


def carrying_style(folder: Path, lora: Path) -> Path:
    """A queue.zip of one task naming style.safetensors, which it carries (`lora`'s bytes)."""
    return queue_zip(folder, [TASK | {"activated_loras": ["style.safetensors"]}], {"style.safetensors": lora})


def queue_zip(folder: Path, tasks: list[dict[str, Any]], files: dict[str, Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": n, "params": t} for n, t in enumerate(tasks, 1)]))
        for name, path in files.items():
            zipped.write(path, name)
    return archive


def submit_queue(url: str, archive: Path) -> tuple[int, dict[str, Any]]:
    boundary = "wanfarm-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="queue.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + archive.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return request(url, "POST", "/v1/queues", body, f"multipart/form-data; boundary={boundary}", SUBMIT)
