"""Submitting jobs that force a profile or an attention kernel, over real HTTP and the command line:
refused by name when WanFarm has no such kernel or profile (422, exit 2) or when no agent of the pool
could ever run them (409), else stored, and queued for the scheduler with what they force."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli import main
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from models.attention import AttentionMode
from models.overrides import Overrides
from models.profiles import Profile
from scheduler.snapshot import AgentView
from tests.declared_agents import declared_agent
from tests.job_records import new_job
from tests.unit.served_app import serve

ANA = {"Authorization": "Bearer ana-key"}
WAN = {"model_type": "t2v", "prompt": "a fox", "seed": 1}  # Wan 14B, 832x480x81
# An RTX 4090 whose node has no SageAttention installed: it reports sdpa alone.
POOL: list[AgentView] = [replace(declared_agent("RTX 4090"), attention_modes=frozenset({AttentionMode.SDPA}))]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[str, JobStore]]:
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: POOL, lambda: 1_700_000_000.0)
        app = create_app(service, KeyRing({"ana-key": Principal("ana", Role.SUBMIT)}), list)
        with serve(app) as url:
            yield url, store


def post(url: str, settings: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/jobs", json=settings, headers=ANA, timeout=30)


def test_a_kernel_wanfarm_does_not_have_is_a_422_naming_the_key(farm: tuple[str, JobStore]) -> None:
    url, store = farm
    answer = post(url, WAN | {"override_attention": "sage3"})
    assert answer.status_code == 422
    [line] = answer.json()["detail"]
    assert line.startswith("settings: override_attention: 'sage3' is not supported by WanFarm yet")
    assert store.list_jobs(limit=10) == []


def test_a_profile_no_agent_fits_is_a_409_naming_the_key(farm: tuple[str, JobStore]) -> None:
    url, store = farm
    answer = post(url, WAN | {"override_profile": 1})
    assert answer.status_code == 409
    [line] = answer.json()["detail"]
    assert "cannot run: override_profile: profile 1 does not fit on any agent: on the largest GPU" in line
    assert "wait_for_capacity" in answer.json()["hint"]
    assert store.list_jobs(limit=10) == []


def test_a_kernel_no_agent_runs_is_a_409_naming_the_key(farm: tuple[str, JobStore]) -> None:
    url, _ = farm
    answer = post(url, WAN | {"override_attention": "sage"})
    assert answer.status_code == 409
    [line] = answer.json()["detail"]
    assert "override_attention: attention 'sage' is not available on any agent: RTX 4090 runs sdpa" in line


def test_a_job_an_agent_can_run_is_queued_with_what_it_forces(farm: tuple[str, JobStore]) -> None:
    url, store = farm
    answer = post(url, WAN | {"override_profile": 4.5, "override_attention": "sdpa"})
    assert answer.status_code == 201, answer.text
    [job] = answer.json()["jobs"]
    [queued] = store.queued_jobs([job["id"]])
    assert queued.overrides == Overrides(Profile.P4_PLUS, AttentionMode.SDPA)


def test_jobs_stored_without_the_keys_force_nothing(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db") as store:
        [old] = store.add_jobs([new_job(settings={"prompt": "a fox", "seed": 7})], 1.0)
        [queued] = store.queued_jobs([old.id])
    assert queued.overrides is None


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"override_attention": "sol"}, "override_attention: 'sol'"),
        ({"override_profile": 6}, "override_profile: 6"),
    ],
)
def test_wanfarm_render_refuses_an_unknown_override_with_exit_2(
    keys: dict[str, Any], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "job.json"
    settings.write_text(json.dumps({"model_type": "wan-tiny", "prompt": "a fox"} | keys))
    assert main(["render", str(settings), "--dry-run", "--cache", str(tmp_path / "cache")]) == 2
    assert f"job.json: {named}" in capsys.readouterr().err
