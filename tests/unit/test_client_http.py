"""The command line's client over real HTTP: the farm's refusals read as its own words, listings
filtered by several states, a job's event stream followed to its end, the API key sent to the farm
and to no one else, an upload refused before it was all sent, and a kept-alive connection the farm
has closed opened again."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli.client import FarmClient, FarmError
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from tests.unit.loopback_http import Asked, Reply, scripted_server
from tests.unit.served_app import serve

SETTINGS = {"model_type": "wan-tiny", "prompt": "a fox", "seed": 1, "video_length": 9}
KEY = "alice-key"


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[str]:
    """A farm's API with one API key and no agents (jobs stay queued); yields its URL."""
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), list, time.time)
        keys = KeyRing({KEY: Principal("alice", Role.SUBMIT)})
        with serve(create_app(service, keys, list)) as url:
            yield url


def test_a_refusal_reads_as_the_farms_error_its_details_and_its_hint(farm: str) -> None:
    with closing(FarmClient(farm, KEY)) as client, pytest.raises(FarmError) as refused:
        client.submit([SETTINGS | {"model_type": "no-such-model"}])
    lines = str(refused.value).split("\n  ")
    assert refused.value.status == 422 and lines[0] == "422: invalid settings"
    assert "unknown model 'no-such-model'" in lines[1] and lines[-1].startswith("hint: ")


def test_a_request_without_the_key_is_refused(farm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANFARM_API_KEY", raising=False)
    with closing(FarmClient(farm)) as client, pytest.raises(FarmError) as refused:
        client.jobs()
    assert refused.value.status == 401


def test_listing_by_several_states_finds_the_jobs_of_each(farm: str) -> None:
    with closing(FarmClient(farm, KEY)) as client:
        kept, canceled = client.submit([SETTINGS, SETTINGS | {"seed": 2}]).jobs
        client.cancel(canceled.id)
        assert [job.id for job in client.jobs(["canceled"]).jobs] == [canceled.id]
        both = client.jobs(["queued", "canceled"]).jobs
    assert sorted(job.id for job in both) == sorted([kept.id, canceled.id])


def test_a_jobs_event_stream_is_followed_until_it_ends(farm: str) -> None:
    with closing(FarmClient(farm, KEY)) as client:
        [job] = client.submit([SETTINGS]).jobs
        client.cancel(job.id)
        events = list(client.events(job.id))
    assert [data["state"] for kind, data in events if kind == "state"] == ["queued", "canceled"]
    assert events[-1] == ("end", {"state": "canceled"})


def test_a_queue_upload_keeps_its_priority(farm: str, tmp_path: Path) -> None:
    archive = tmp_path / 'a "queue".zip'  # a name with quotes in its form field
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": SETTINGS}]))
    with closing(FarmClient(farm, KEY)) as client:
        [job] = client.submit_queue(archive, priority=70).jobs
        assert client.job(job.id).priority == 70


def test_a_download_sends_the_key_to_the_farm_and_not_to_another_host(tmp_path: Path) -> None:
    keys: dict[str, str | None] = {}

    def media(asked: Asked) -> Reply:
        keys[asked.target] = asked.headers.get("authorization")
        return Reply(200, b"frames of " + asked.target.encode(), content_type="video/mp4")

    with (
        scripted_server(media) as farm,
        scripted_server(media) as bucket,
        closing(FarmClient(farm, KEY)) as client,
    ):
        ours = client.download("/v1/jobs/j-1/outputs/a.mp4", tmp_path / "a.mp4")
        theirs = client.download(f"{bucket}/b.mp4?X-Amz-Signature=s", tmp_path / "b.mp4")
    assert ours.read_bytes() == b"frames of /v1/jobs/j-1/outputs/a.mp4"
    assert theirs.read_bytes() == b"frames of /b.mp4?X-Amz-Signature=s"
    assert keys == {"/v1/jobs/j-1/outputs/a.mp4": f"Bearer {KEY}", "/b.mp4?X-Amz-Signature=s": None}


def test_a_connection_the_farm_closed_while_idle_is_opened_again() -> None:
    answers = iter([Reply(200, b"[]", then_close=True), Reply(200, b"[]")])
    with scripted_server(lambda _: next(answers)) as farm, closing(FarmClient(farm)) as client:
        assert client.agents() == []
        time.sleep(0.1)  # idle: the farm has closed the connection by now
        assert client.agents() == []


def test_an_upload_refused_before_it_was_all_sent_reads_as_the_farms_refusal(tmp_path: Path) -> None:
    archive = tmp_path / "queue.zip"
    archive.write_bytes(bytes(32 * 2**20))  # more than the sockets hold: the sending fails
    refusal = Reply(413, json.dumps({"error": "the archive exceeds 1 MiB"}).encode())
    with (
        scripted_server(lambda _: refusal, read_bodies=False) as farm,
        closing(FarmClient(farm, retry_delays_s=())) as client,
        pytest.raises(FarmError) as refused,
    ):
        client.submit_queue(archive)
    assert refused.value.status == 413 and str(refused.value) == "413: the archive exceeds 1 MiB"
