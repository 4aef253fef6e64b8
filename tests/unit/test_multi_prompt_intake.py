"""A settings file whose prompt holds several lines (multi_prompts_gen_type) is one job per line
wherever settings enter: `wanfarm render --dry-run`, the entries `wanfarm submit` sends, and a
REST submission over real HTTP; a mode WanFarm cannot honour is refused naming the key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli import main
from controller.service import MAX_BATCH, FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from models.prompts import expand_prompts
from models.settings import parse_settings, resolve
from processing.settings_files import load_settings_files
from tests.unit.served_app import serve

T0 = 1_700_000_000.0
ANA = {"Authorization": "Bearer ana-key"}
LINES = ["a red fox in the snow", "a heron on a lake", "a lighthouse at night"]


def three_lines(**more: Any) -> dict[str, Any]:
    prompt = "# three shots\n" + "\n".join(LINES)
    base = {"model_type": "wan-tiny", "prompt": prompt, "multi_prompts_gen_type": "G", "video_length": 9}
    return base | more


def write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def render_dry_run(path: Path, tmp_path: Path) -> int:
    return main(["render", "--dry-run", str(path), "--cache", str(tmp_path / "cache")])


# --- wanfarm render / wanfarm submit ---------------------------------------------------------------


def test_render_dry_run_plans_one_job_per_prompt_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render_dry_run(write(tmp_path, "shots.json", three_lines(seed=7)), tmp_path) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "3 job(s) valid; dry run, nothing rendered" in printed
    planned = [line for line in printed if line.startswith("shots.json (prompt ")]
    assert [line.split(":")[0] for line in planned] == [f"shots.json (prompt {n} of 3)" for n in (1, 2, 3)]
    assert all("seeds=7;" in line for line in planned)  # a fixed seed renders every line with it


def test_render_dry_run_plans_one_window_per_line_as_one_long_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = three_lines(model_type="wan-ti2v-tiny", multi_prompts_gen_type="W", video_length=25)
    assert render_dry_run(write(tmp_path, "long.json", long | {"sliding_window_size": 9}), tmp_path) == 0
    assert "1 job(s) valid; dry run, nothing rendered" in capsys.readouterr().out


def test_render_dry_run_refuses_one_window_per_line_on_a_model_without_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "long.json", three_lines(multi_prompts_gen_type="W"))
    assert render_dry_run(path, tmp_path) == 2
    errors = capsys.readouterr().err
    assert "long.json: multi_prompts_gen_type: 'W' (one sliding window per line)" in errors
    assert "wan-tiny renders no sliding windows" in errors and "nothing rendered" in errors


def test_each_entry_names_its_line_and_carries_that_line_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "batch.json", [three_lines(), {"model_type": "wan-tiny", "prompt": "a lake"}])
    entries = load_settings_files(path, tmp_path / "work")
    assert [e.source for e in entries] == [
        "batch.json[0] (prompt 1 of 3)",
        "batch.json[0] (prompt 2 of 3)",
        "batch.json[0] (prompt 3 of 3)",
        "batch.json[1]",
    ]
    assert [e.data["prompt"] for e in entries if isinstance(e.data, dict)] == [*LINES, "a lake"]


# --- REST -------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


@pytest.fixture
def farm(store: JobStore, tmp_path: Path) -> Iterator[httpx.Client]:
    service = FarmService(store, LocalStore(tmp_path / "objects"), list, lambda: T0)
    app = create_app(service, KeyRing({"ana-key": Principal("ana", Role.SUBMIT)}), list)
    with serve(app) as url, httpx.Client(base_url=url, headers=ANA, timeout=10) as client:
        yield client


def stored(store: JobStore) -> list[dict[str, Any]]:
    return [job.settings for job in store.list_jobs(owner=None, states=None, limit=500, before=None)]


def test_a_rest_submit_of_a_three_line_prompt_makes_three_jobs(farm: httpx.Client, store: JobStore) -> None:
    answer = farm.post("/v1/jobs", json=three_lines())
    assert answer.status_code == 201, answer.text
    jobs = answer.json()["jobs"]
    assert [job["settings"]["prompt"] for job in jobs] == LINES
    # A random seed (-1, the default) is drawn for each line, as WanGP does for each queued line.
    assert len({job["settings"]["seed"] for job in jobs}) == 3
    assert len(stored(store)) == 3


def test_a_rest_submit_refuses_a_window_mode_with_a_422_naming_the_key_and_stores_nothing(
    farm: httpx.Client, store: JobStore
) -> None:
    # All or none: the valid first item is not stored either.
    windows = three_lines(prompt="\n\n".join(LINES), multi_prompts_gen_type="PW", seed=3)
    answer = farm.post("/v1/jobs", json=[three_lines(), windows])
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid settings"
    [problem] = body["detail"]
    assert problem.startswith("settings[1]: multi_prompts_gen_type: 'PW' (one sliding window per paragraph)")
    assert stored(store) == []


def test_a_problem_in_one_line_names_that_line(farm: httpx.Client, store: JobStore) -> None:
    answer = farm.post("/v1/jobs", json=three_lines(video_length=10))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0].startswith("settings (prompt 1 of 3): video_length: 10")
    assert stored(store) == []


def test_a_retried_multi_line_submit_answers_the_same_three_jobs(farm: httpx.Client, store: JobStore) -> None:
    key = {"Idempotency-Key": "three-shots-1"}
    first = farm.post("/v1/jobs", json=three_lines(), headers=key)
    again = farm.post("/v1/jobs", json=three_lines(), headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert len(stored(store)) == 3


def test_prompt_lines_past_the_batch_limit_are_refused_with_413(farm: httpx.Client, store: JobStore) -> None:
    prompt = "\n".join(f"shot {n}" for n in range(MAX_BATCH // 2 + 1))
    answer = farm.post("/v1/jobs", json=[three_lines(prompt=prompt), three_lines(prompt=prompt)])
    assert answer.status_code == 413, answer.text
    assert f"at most {MAX_BATCH} jobs" in answer.json()["error"]
    assert stored(store) == []


def test_an_agent_re_reading_a_stored_line_gets_that_line_and_the_same_work(
    farm: httpx.Client, store: JobStore, tmp_path: Path
) -> None:
    # The agent parses the stored settings again: nothing may split them or change what was placed.
    assert farm.post("/v1/jobs", json=three_lines()).status_code == 201
    for job in store.list_jobs(owner=None, states=None, limit=500, before=None):
        assert expand_prompts(job.settings) == [job.settings]
        again = resolve(parse_settings(job.settings), tmp_path, job.id)
        assert again.work == job.work and again.settings.prompt == job.settings["prompt"]
