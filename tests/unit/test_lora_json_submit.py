"""LoRAs named by settings sent as JSON (POST /v1/jobs, `wanfarm submit x.json`): one found nowhere is
refused at submit, over real HTTP, as a queue.zip's is; one uploaded, named by a Hugging Face URL or
held by an agent is taken; a farm without agents yet cannot be asked and takes the job."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli import main
from controller.cli.exits import EXIT_INVALID
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from models.loras import held_key
from scheduler.snapshot import AgentView
from tests.declared_agents import declared_agent
from tests.unit import test_lora_upload
from tests.unit.served_app import serve
from tests.unit.test_lora_sources import HUB_URL
from tests.unit.test_lora_upload import request, upload
from tests.unit.tiny_agent import SETTINGS

KEY = "k-submit"
TASK = SETTINGS | {"num_inference_steps": 2}
FOUND_NOWHERE = (
    "activated_loras: 'missing.safetensors' is not uploaded, not a Hugging Face URL, and no "
    "agent's LoRA folder or cache holds it"
)

lora = test_lora_upload.lora  # the same tiny LoRA fixture


@dataclass
class Farm:
    url: str
    store: JobStore
    pool: list[AgentView]  # what the service asks at each submit


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    """A served farm whose pool is one idle RTX 4090 holding held.safetensors in its LoRA folder and
    cached.safetensors in its LoRA cache."""
    holding = frozenset({"held.safetensors", held_key("cached.safetensors", "ab" * 32)})
    pool = [replace(declared_agent("RTX 4090", "n1-gpu0"), loras=holding)]
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: list(pool), time.time)
        with serve(create_app(service, KeyRing({KEY: Principal("ana", Role.SUBMIT)}), lambda: [])) as url:
            yield Farm(url, store, pool)


def post(url: str, settings: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"settings": settings}).encode()
    return request(url, "POST", "/v1/jobs", body, "application/json", KEY)


def test_json_settings_naming_a_lora_found_nowhere_are_refused_with_422_naming_it(farm: Farm) -> None:
    status, body = post(farm.url, TASK | {"activated_loras": ["held.safetensors", "missing.safetensors"]})
    assert status == 422, body
    assert (body["error"], body["detail"]) == ("LoRAs found nowhere", [FOUND_NOWHERE])
    assert "queue.zip" not in json.dumps(body)  # JSON carries no files: the hint names what does
    assert "POST /v1/loras" in body["hint"] and "Hugging Face URL" in body["hint"]
    assert farm.store.queue_ids(10) == []


def test_json_settings_naming_loras_uploaded_on_the_hub_or_held_by_an_agent_are_queued(
    farm: Farm, lora: Path
) -> None:
    assert upload(farm.url, "style.safetensors", lora.read_bytes(), key=KEY)[0] == 201
    named = ["style.safetensors", HUB_URL, "held.safetensors", "sub/cached.safetensors"]
    status, body = post(farm.url, TASK | {"activated_loras": named})
    assert status == 201, body
    [job] = body["jobs"]
    assert farm.store.queue_ids(10) == [job["id"]]


def test_a_farm_without_agents_yet_queues_json_settings_naming_any_lora(farm: Farm) -> None:
    farm.pool.clear()  # its agents' LoRA folders cannot be asked: the job waits for them
    status, body = post(farm.url, TASK | {"activated_loras": ["missing.safetensors"]})
    assert status == 201, body


def test_wanfarm_submit_of_a_settings_file_naming_a_lora_found_nowhere_exits_2(
    farm: Farm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(TASK | {"activated_loras": ["missing.safetensors"]}))
    assert main(["submit", str(path), "--server", farm.url, "--api-key", KEY]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "422: LoRAs found nowhere" in err and FOUND_NOWHERE in err
    assert farm.store.queue_ids(10) == []
