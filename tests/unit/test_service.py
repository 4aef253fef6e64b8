"""FarmService over a real JobStore and LocalStore with no agents: what a caller of the API gets back
(the status and body of a ServiceError, the jobs stored), without Ray or HTTP.

Attachments come with the request (a queue.zip), never from the controller's disk; uploads are swept
once no active job refers to them; an Idempotency-Key makes a retried submit return the first jobs;
another owner's job answers as absent.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller import uploads
from controller.auth import Principal, Role
from controller.jobs import JobState
from controller.leftovers import sweep_leftovers
from controller.service import FarmService, Submitted
from controller.service_error import ServiceError
from controller.store import JobStore
from gpu_agent.checkpoints import checkpoint_key
from gpu_agent.messages import OBJECT_REF, UPLOADS_PREFIX
from gpu_agent.storage import LocalStore, checkpoints_prefix, window_key, windows_prefix
from models.profiles import Profile
from models.work import WorkSize

ALICE = Principal("alice", Role.SUBMIT)
BOB = Principal("bob", Role.SUBMIT)
ROOT = Principal("root", Role.ADMIN)
START = 1_700_000_000.0
MINUTE = 60.0
I2V = {"model_type": "i2v", "prompt": "a lighthouse"}  # takes a start image
TINY = {"model_type": "wan-tiny", "prompt": "a fox"}
PNG = b"\x89PNG not really"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Farm:
    service: FarmService
    store: JobStore
    storage: LocalStore
    clock: Clock

    def uploads(self) -> list[str]:
        return [stored.key for stored in self.storage.list(UPLOADS_PREFIX)]

    def all_jobs(self) -> list[str]:
        return [job.id for job in self.store.list_jobs(limit=1000)]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    clock = Clock()
    storage = LocalStore(tmp_path / "objects")
    with JobStore(tmp_path / "jobs.db") as store:
        yield Farm(FarmService(store, storage, lambda: [], clock), store, storage, clock)


def refusal(call: Callable[[], object]) -> ServiceError:
    with pytest.raises(ServiceError) as refused:
        call()
    return refused.value


def queue_zip(folder: Path, *params: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    """A queue.zip of these settings, carrying `files` (default: start.png for image_start)."""
    archive = folder / f"queue-{len(list(folder.glob('queue-*.zip')))}.zip"
    manifest = [{"id": number, "params": p} for number, p in enumerate(params, start=1)]
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("queue.json", json.dumps(manifest))
        for name, data in (files if files is not None else {"start.png": PNG}).items():
            zf.writestr(name, data)
    return archive


def submit_queue(farm: Farm, archive: Path, who: Principal = ALICE, **options: Any) -> Submitted:
    return farm.service.submit_queue(who, archive, options.pop("priority", 50), True, **options)


# --- attachments over HTTP: item 1 of issue 13 ------------------------------------------------------


def test_a_submission_is_stored_as_the_work_its_settings_resolve_to(farm: Farm) -> None:
    [job] = farm.service.submit(ALICE, [{**TINY, "num_inference_steps": 6, "batch_size": 2}]).jobs
    expected = WorkSize("wan-tiny", 64, 64, 9, 6, batch=2)  # size and frames from the model's defaults
    stored = farm.store.get(job.id)
    assert stored is not None and (job.work, stored.work) == (expected, expected)


def test_json_settings_naming_a_host_file_are_refused_and_store_nothing(farm: Farm, tmp_path: Path) -> None:
    host_file = tmp_path / "secret.txt"
    host_file.write_text("the controller's own file")
    refused = refusal(
        lambda: farm.service.submit(ALICE, [I2V | {"image_start": str(host_file)}], wait_for_capacity=True)
    )
    assert refused.status == 422 and refused.error == "invalid settings"
    [line] = refused.detail
    assert line.startswith("settings: image_start: attachments travel with the request")
    assert "POST /v1/queues" in line and "wanfarm submit" in line
    assert farm.all_jobs() == [] and farm.uploads() == []


def test_a_missing_host_file_gets_the_same_answer_as_an_existing_one(farm: Farm, tmp_path: Path) -> None:
    existing = tmp_path / "hostname"
    existing.write_text("host")

    def answer(path: str) -> tuple[int, str, list[str], str]:
        refused = refusal(lambda: farm.service.submit(ALICE, [I2V | {"image_start": path}], 50, True))
        return refused.status, refused.error, refused.detail, refused.hint

    assert answer(str(existing)) == answer("/nonexistent/secret") == answer("relative/name.png")


def test_json_settings_may_not_forge_a_reference_to_stored_objects(farm: Farm) -> None:
    # An `object:` reference would make an agent download another owner's upload or the weights.
    forged = I2V | {"image_end": f"{OBJECT_REF}uploads/someone-else/face.png"}
    refused = refusal(lambda: farm.service.submit(ALICE, [forged], wait_for_capacity=True))
    assert refused.status == 422 and refused.detail[0].startswith("settings: image_end: attachments travel")


@pytest.mark.parametrize("name", ["/etc/hostname", "../x", "start.png/../../x"])
def test_a_queue_zip_naming_a_file_outside_itself_is_refused(farm: Farm, tmp_path: Path, name: str) -> None:
    refused = refusal(lambda: submit_queue(farm, queue_zip(tmp_path, I2V | {"image_start": name})))
    assert refused.status == 422 and name in " ".join(refused.detail)
    assert farm.all_jobs() == [] and farm.uploads() == []


def test_a_queue_zips_attachment_is_stored_for_its_job(farm: Farm, tmp_path: Path) -> None:
    [job] = submit_queue(farm, queue_zip(tmp_path, I2V | {"image_start": "start.png"})).jobs
    reference = job.settings["image_start"]
    assert reference.startswith(OBJECT_REF + UPLOADS_PREFIX) and reference.endswith("/start.png")
    copy = tmp_path / "copy.png"
    farm.storage.get_file(reference.removeprefix(OBJECT_REF), copy)
    assert copy.read_bytes() == PNG


def test_a_queue_zips_end_image_is_stored_for_its_job_beside_its_start_image(
    farm: Farm, tmp_path: Path
) -> None:
    first_last = {
        "model_type": "flf2v_720p",
        "prompt": "a fox",
        "image_start": "start.png",
        "image_end": "end.png",
    }
    archive = queue_zip(tmp_path, first_last, files={"start.png": PNG, "end.png": PNG})
    [job] = submit_queue(farm, archive).jobs
    for key, name in (("image_start", "/start.png"), ("image_end", "/end.png")):
        reference = job.settings[key]
        assert reference.startswith(OBJECT_REF + UPLOADS_PREFIX) and reference.endswith(name), key


# --- settings the service refuses with a 422 naming the key: items 3, 8 and 11 ---------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"resolution": "9" * 4301 + "x64"}, 'settings: resolution: must be "WIDTHxHEIGHT" with 1 to 5'),
        ({"resolution": "\uff16\uff14x64"}, "settings: resolution: must be"),
        ({"prompt": "a" * 1_000_000}, "settings: prompt: String should have at most 16000 characters"),
        ({"video_length": "9"}, "settings: video_length: must be a number, not str"),
    ],
)
def test_bad_settings_are_refused_with_422_naming_the_key(
    farm: Farm, change: dict[str, object], expected: str
) -> None:
    refused = refusal(lambda: farm.service.submit(ALICE, [TINY | change]))
    assert refused.status == 422 and refused.detail[0].startswith(expected)
    assert farm.all_jobs() == []


# --- sweeping uploads --------------------------------------------------------------------------------


def uploaded(farm: Farm, job_id: str) -> bool:
    reference = farm.service.get(ROOT, job_id).settings["image_start"]
    return bool(farm.storage.exists(reference.removeprefix(OBJECT_REF)))


def test_a_sweep_deletes_a_finished_jobs_upload_and_keeps_active_ones(farm: Farm, tmp_path: Path) -> None:
    with_start = I2V | {"image_start": "start.png"}
    done, waiting, running = submit_queue(farm, queue_zip(tmp_path, with_start, with_start, with_start)).jobs
    farm.service.cancel(ALICE, done.id)  # a queued job is canceled at once
    farm.store.start_attempt(running.id, "agent-1", Profile.P3, None, farm.clock())
    farm.clock.now += 11 * MINUTE
    deleted = uploads.sweep(farm.storage, farm.store, farm.clock())
    assert not uploaded(farm, done.id) and uploaded(farm, waiting.id) and uploaded(farm, running.id)
    assert len(deleted) == 1


def test_a_sweep_spares_an_upload_younger_than_its_minimum_age(farm: Farm, tmp_path: Path) -> None:
    # As a batch being stored right now has: uploaded, not yet referenced by any job.
    image = tmp_path / "start.png"
    image.write_bytes(PNG)
    uploads.upload(farm.storage, image, farm.clock())
    assert uploads.sweep(farm.storage, farm.store, farm.clock() + 9 * MINUTE) == []
    assert len(farm.uploads()) == 1
    assert len(uploads.sweep(farm.storage, farm.store, farm.clock() + 10 * MINUTE)) == 1
    assert farm.uploads() == []


def test_a_sweep_deletes_unreferenced_uploads_from_before_they_carried_their_time(
    farm: Farm, tmp_path: Path
) -> None:
    image = tmp_path / "start.png"
    image.write_bytes(PNG)
    farm.storage.put_file("uploads/0123456789abcdef0123456789abcdef/start.png", image, "image/png")
    assert uploads.sweep(farm.storage, farm.store, farm.clock()) == [
        "uploads/0123456789abcdef0123456789abcdef/"
    ]


def test_a_sweep_deletes_the_checkpoints_of_a_job_that_ended_and_keeps_a_requeued_ones(
    farm: Farm, tmp_path: Path
) -> None:
    failed, requeued = (farm.service.submit(ALICE, [TINY]).jobs[0] for _ in range(2))
    state = tmp_path / "state.ckpt"
    state.write_bytes(b"a denoising state")
    for job in (failed, requeued):
        farm.store.start_attempt(job.id, "agent-1", Profile.P3, None, farm.clock())
        farm.storage.put_file(checkpoint_key(job.id, "gen0"), state, "application/octet-stream")
    farm.store.finish(failed.id, 1, JobState.FAILED, "RuntimeError: boom", farm.clock())
    farm.store.requeue(requeued.id, 1, "agent-1", "agent lost", farm.clock())
    assert sweep_leftovers(farm.storage, farm.store) == [checkpoints_prefix(failed.id)]
    assert not farm.storage.exists(checkpoint_key(failed.id, "gen0"))
    assert farm.storage.exists(checkpoint_key(requeued.id, "gen0"))  # its next attempt resumes


def test_a_sweep_deletes_the_windows_of_a_long_video_canceled_between_windows(
    farm: Farm, tmp_path: Path
) -> None:
    canceled, requeued, running = (farm.service.submit(ALICE, [TINY]).jobs[0] for _ in range(3))
    frames = tmp_path / "frames.npz"
    frames.write_bytes(b"a window's frames")
    for job in (canceled, requeued, running):
        farm.store.start_attempt(job.id, "agent-1", Profile.P3, None, farm.clock())
        farm.storage.put_file(window_key(job.id, 0), frames, "application/octet-stream")
    farm.service.cancel(ALICE, canceled.id)  # running: canceled once its window is stored
    for job in (canceled, requeued):
        farm.store.next_window(job.id, 1, "agent-1", 1, 3, farm.clock())
    assert farm.service.get(ALICE, canceled.id).state is JobState.CANCELED
    assert sweep_leftovers(farm.storage, farm.store) == [windows_prefix(canceled.id)]
    assert not farm.storage.list(windows_prefix(canceled.id))
    for job in (requeued, running):  # queued for its next window, or rendering one
        assert farm.storage.exists(window_key(job.id, 0))


# --- idempotent submission: item 9 -------------------------------------------------------------------


def test_a_retried_submit_with_the_same_key_returns_the_first_jobs_and_stores_nothing(farm: Farm) -> None:
    first = farm.service.submit(ALICE, [TINY, TINY], idempotency_key="retry-1")
    again = farm.service.submit(ALICE, [TINY, TINY], idempotency_key="retry-1")
    assert again.replayed and not first.replayed
    assert [job.id for job in again.jobs] == [job.id for job in first.jobs]
    assert sorted(farm.all_jobs()) == sorted(job.id for job in first.jobs)


def test_a_key_reused_for_a_different_request_is_refused(farm: Farm) -> None:
    farm.service.submit(ALICE, [TINY], idempotency_key="retry-1")
    for changed in ([TINY | {"prompt": "a wolf"}], [TINY, TINY]):
        refused = refusal(lambda: farm.service.submit(ALICE, changed, idempotency_key="retry-1"))  # noqa: B023
        assert refused.status == 422 and refused.error == "Idempotency-Key reused with a different request"
    refused = refusal(lambda: farm.service.submit(ALICE, [TINY], priority=90, idempotency_key="retry-1"))
    assert refused.status == 422
    assert len(farm.all_jobs()) == 1


def test_another_owners_same_key_is_their_own(farm: Farm) -> None:
    mine = farm.service.submit(ALICE, [TINY], idempotency_key="k")
    theirs = farm.service.submit(BOB, [TINY], idempotency_key="k")
    assert not theirs.replayed and theirs.jobs[0].id != mine.jobs[0].id


def test_a_retried_queue_zip_uploads_nothing_again(farm: Farm, tmp_path: Path) -> None:
    archive = queue_zip(tmp_path, I2V | {"image_start": "start.png"})
    first = submit_queue(farm, archive, idempotency_key="q-1")
    before = farm.uploads()
    again = submit_queue(farm, archive, idempotency_key="q-1")
    assert again.replayed and [job.id for job in again.jobs] == [job.id for job in first.jobs]
    assert farm.uploads() == before and len(farm.all_jobs()) == 1
    refused = refusal(lambda: submit_queue(farm, archive, priority=90, idempotency_key="q-1"))
    assert refused.status == 422 and refused.error == "Idempotency-Key reused with a different request"


def test_a_replay_answers_even_once_the_request_would_be_refused(farm: Farm) -> None:
    # The first answer stands: a retry is not validated again (the jobs may have run meanwhile).
    first = farm.service.submit(ALICE, [TINY], idempotency_key="k")
    farm.service.cancel(ALICE, first.jobs[0].id)
    again = farm.service.submit(ALICE, [TINY], idempotency_key="k")
    assert again.replayed and again.jobs[0].state is JobState.CANCELED


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_an_unusable_idempotency_key_is_refused(farm: Farm, key: str) -> None:
    refused = refusal(lambda: farm.service.submit(ALICE, [TINY], idempotency_key=key))
    assert refused.status == 422 and refused.error == "invalid Idempotency-Key"
    assert farm.all_jobs() == []


# --- owners: item 12 ----------------------------------------------------------------------------------


def test_another_owners_job_answers_as_absent_to_get_and_cancel(farm: Farm) -> None:
    [job] = farm.service.submit(ALICE, [TINY]).jobs
    absent = refusal(lambda: farm.service.get(BOB, "0000000000000000"))
    for call in (lambda: farm.service.get(BOB, job.id), lambda: farm.service.cancel(BOB, job.id)):
        refused = refusal(call)
        assert (refused.status, refused.error) == (404, f"no job {job.id!r}")
        assert (absent.status, absent.detail, absent.hint) == (refused.status, refused.detail, refused.hint)
    assert farm.service.get(ALICE, job.id).state is JobState.QUEUED


def test_another_owners_jobs_are_absent_from_listings(farm: Farm) -> None:
    [mine] = farm.service.submit(ALICE, [TINY]).jobs
    [theirs] = farm.service.submit(BOB, [TINY]).jobs
    assert [job.id for job in farm.service.list_jobs(BOB, None, 50, None)] == [theirs.id]
    assert [job.id for job in farm.service.list_jobs(BOB, [JobState.QUEUED], 50, None)] == [theirs.id]
    assert [job.id for job in farm.service.list_jobs(ALICE, None, 50, None)] == [mine.id]


def test_an_admin_sees_lists_and_cancels_every_owners_jobs(farm: Farm) -> None:
    [mine] = farm.service.submit(ALICE, [TINY]).jobs
    [theirs] = farm.service.submit(BOB, [TINY]).jobs
    assert {job.id for job in farm.service.list_jobs(ROOT, None, 50, None)} == {mine.id, theirs.id}
    assert farm.service.get(ROOT, mine.id).owner == "alice"
    assert farm.service.cancel(ROOT, theirs.id).state is JobState.CANCELED
