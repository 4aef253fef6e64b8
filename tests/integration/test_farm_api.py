"""The REST API of a running farm over real HTTP: keys and owners, submission forms, refusals that
store nothing, jobs no GPU of the pool can run, queue.zip uploads, cancel, events and paging."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.cli.client import FarmClient, FarmError
from controller.farm import Farm
from controller.schemas import JobSummary
from models.catalogue import MODELS_ENV, catalogue
from models.catalogue import definitions as catalogue_definitions
from models.settings import MAX_SEED
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

KEYS = {"alice": "alice-key-1", "bob": "bob-key-2", "root": "root-key-3"}
# The only node declares an RTX 4090 with 32 GB of RAM: every model fits it except Wan 2.2 A14B
# (two 14B experts), whose least RAM-hungry profile needs about 35 GiB.
NODE_RAM_GB = 32
TOO_BIG = {"model_type": "t2v_2_2", "prompt": "a storm at sea"}


@dataclass(frozen=True)
class Users:
    farm: Farm
    alice: FarmClient
    bob: FarmClient
    root: FarmClient

    def http(self, who: str | None) -> httpx.Client:
        """A raw HTTP client as `who` (a KEYS name), or with no Authorization at all."""
        headers = {"Authorization": f"Bearer {KEYS[who]}"} if who else {}
        return httpx.Client(base_url=self.farm.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    folder = tmp_path_factory.mktemp("api-farm")
    # A folder of WanGP definitions, empty at the start: POST /v1/models adds to it.
    (folder / "models").mkdir()
    models = pytest.MonkeyPatch()
    models.setenv(MODELS_ENV, str(folder / "models"))
    catalogue.cache_clear()
    catalogue_definitions.cache_clear()
    keys = folder / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"key": KEYS["alice"], "owner": "alice", "role": "submit"},
                {"key": KEYS["bob"], "owner": "bob", "role": "submit"},
                {"key": KEYS["root"], "owner": "root", "role": "admin"},
            ]
        )
    )
    nodes = [NodeSpec(("RTX 4090",), ram_gb=NODE_RAM_GB)]
    with (
        ray_cluster(nodes) as cluster,
        running_farm(folder / "data", cluster.address, agents=1, api_keys=keys) as farm,
    ):
        clients = {name: FarmClient(farm.url, key) for name, key in KEYS.items()}
        yield Users(farm, **clients)
        for client in clients.values():
            client.close()
    models.undo()
    catalogue.cache_clear()
    catalogue_definitions.cache_clear()


def all_job_ids(users: Users) -> set[str]:
    """Every stored job, as the admin lists them."""
    return {job.id for job in users.root.jobs(limit=500).jobs}


def post_jobs(users: Users, who: str, body: object) -> httpx.Response:
    with users.http(who) as http:
        return http.post("/v1/jobs", json=body)


# --- API keys and owners -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/agents")]
)
def test_a_request_without_a_key_is_refused_with_401_naming_the_problem(
    users: Users, method: str, path: str
) -> None:
    before = all_job_ids(users)
    with users.http(None) as http:
        answer = http.request(method, path, json=tiny("flux-tiny") if method == "POST" else None)
    assert answer.status_code == 401
    assert "API key" in answer.json()["error"]
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert all_job_ids(users) == before


def test_a_wrong_key_is_refused_with_401(users: Users) -> None:
    with httpx.Client(base_url=users.farm.url, headers={"Authorization": "Bearer alice-key-2"}) as http:
        answer = http.get("/v1/jobs")
    assert answer.status_code == 401
    assert "unknown API key" in answer.json()["error"]


def test_another_owners_job_answers_as_absent_and_cannot_be_canceled(users: Users) -> None:
    [job] = users.alice.submit([tiny("wan-tiny")]).jobs
    for peek in (lambda: users.bob.job(job.id), lambda: users.bob.cancel(job.id)):
        with pytest.raises(FarmError) as refused:
            peek()
        assert refused.value.status == 404
    assert job.id not in {j.id for j in users.bob.jobs(limit=500).jobs}
    assert users.alice.job(job.id).owner == "alice"
    # Bob's DELETE changed nothing: the job runs to its end.
    assert wait_job(users.alice, job.id).state == "succeeded"


def test_the_admin_lists_every_owners_jobs_and_a_submitter_only_their_own(users: Users) -> None:
    [alices] = users.alice.submit([tiny("flux-tiny")]).jobs
    [bobs] = users.bob.submit([tiny("flux-tiny")]).jobs
    assert {alices.id, bobs.id} <= all_job_ids(users)
    assert {j.owner for j in users.alice.jobs(limit=500).jobs} == {"alice"}
    assert {j.owner for j in users.bob.jobs(limit=500).jobs} == {"bob"}
    for client, job in ((users.alice, alices), (users.bob, bobs)):
        assert wait_job(client, job.id).state == "succeeded"


def test_a_finished_jobs_output_downloads_for_its_owner_only(users: Users, tmp_path: Path) -> None:
    [job] = users.alice.submit([tiny("wan-tiny")]).jobs
    done = wait_job(users.alice, job.id)
    assert done.state == "succeeded", done.error
    [output] = done.outputs
    assert output.url == f"/v1/jobs/{job.id}/outputs/{output.name}" and output.name.endswith(".mp4")
    video = users.alice.download(output.url, tmp_path / output.name)
    assert read_mp4(video).frame_count == 9
    with users.http("bob") as http:
        assert http.get(output.url).status_code == 404
    with users.http(None) as http:
        assert http.get(output.url).status_code == 401


# --- submission forms ----------------------------------------------------------------------------


def test_a_bare_settings_object_makes_one_job(users: Users) -> None:
    answer = post_jobs(users, "alice", tiny("flux-tiny", prompt="one bare object"))
    assert answer.status_code == 201
    [job] = answer.json()["jobs"]
    assert job["state"] == "queued" and job["owner"] == "alice" and job["model"] == "flux-tiny"
    assert users.alice.job(job["id"]).settings["prompt"] == "one bare object"


def test_a_list_of_settings_makes_one_job_each_in_order(users: Users) -> None:
    prompts = ["first", "second", "third"]
    answer = post_jobs(users, "alice", [tiny("flux-tiny", prompt=p) for p in prompts])
    assert answer.status_code == 201
    jobs = answer.json()["jobs"]
    assert [users.alice.job(job["id"]).settings["prompt"] for job in jobs] == prompts
    assert len({job["id"] for job in jobs}) == 3


def test_the_explicit_form_stores_its_priority(users: Users) -> None:
    answer = post_jobs(users, "alice", {"settings": tiny("flux-tiny"), "priority": 90})
    assert answer.status_code == 201
    [job] = answer.json()["jobs"]
    assert job["priority"] == 90
    assert users.alice.job(job["id"]).priority == 90


def test_a_random_seed_is_drawn_once_at_submit_and_stored(users: Users) -> None:
    [job] = users.alice.submit([tiny("wan-tiny", seed=-1)]).jobs
    seed = job.settings["seed"]
    assert isinstance(seed, int) and 0 <= seed <= MAX_SEED
    done = wait_job(users.alice, job.id)
    assert done.state == "succeeded" and done.settings["seed"] == seed
    assert f"seed{seed}" in done.outputs[0].name


def test_unknown_keys_are_kept_and_reported_as_warnings(users: Users) -> None:
    answer = post_jobs(users, "alice", tiny("flux-tiny", my_own_note="keep me"))
    assert answer.status_code == 201
    body = answer.json()
    assert any("my_own_note" in warning for warning in body["warnings"])
    assert users.alice.job(body["jobs"][0]["id"]).settings["my_own_note"] == "keep me"


# --- refusals: a 4xx with a message, and nothing stored ------------------------------------------


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def queue_json(*params: dict[str, Any]) -> bytes:
    return json.dumps([{"id": i, "params": p} for i, p in enumerate(params, start=1)]).encode()


MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
BAD_JSON = [
    ("unknown model", {"model_type": "no-such-model", "prompt": "x"}, 422, "model_type"),
    ("frames not 4k+1", tiny("wan-tiny", video_length=10), 422, "video_length: 10"),
    # A side off the model's block is floored as WanGP does (65x64 renders 64x64); below the
    # smallest side there is nothing to floor to.
    ("size below the smallest side", tiny("wan-tiny", resolution="31x64"), 422, "resolution"),
    ("negative steps", tiny("wan-tiny", num_inference_steps=-3), 422, "num_inference_steps"),
    ("only the last of a batch bad", [tiny(), tiny(), tiny(video_length=8)], 422, "settings[2]"),
    ("priority 101", {"settings": tiny(), "priority": 101}, 422, "priority"),
    ("priority not a number", {"settings": tiny(), "priority": "high"}, 422, "priority"),
    ("settings a string", {"settings": "wan-tiny"}, 422, "settings"),
    ("a number, not settings", 7, 422, "JSON object"),
    ("an empty batch", [], 422, "no settings"),
    ("a body over 1 MiB", tiny(prompt="x" * (MIB + 10)), 413, "exceeds"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [case[1:] for case in BAD_JSON],
    ids=[case[0] for case in BAD_JSON],
)
def test_a_bad_submission_is_refused_with_a_message_and_stores_nothing(
    users: Users, body: object, status: int, message: str
) -> None:
    before = all_job_ids(users)
    answer = post_jobs(users, "alice", body)
    assert answer.status_code == status
    error = answer.json()
    assert message in " ".join([error["error"], *error["detail"]])
    assert all_job_ids(users) == before


def test_malformed_json_is_refused_with_400(users: Users) -> None:
    before = all_job_ids(users)
    with users.http("alice") as http:
        answer = http.post("/v1/jobs", content=b'{"model_type": "wan-tiny", ', headers=JSON)
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    assert all_job_ids(users) == before


def test_a_chunked_body_over_1_mib_without_a_length_is_refused_with_413(users: Users) -> None:
    before = all_job_ids(users)
    chunks = [b'{"prompt": "', *([b"x" * 65536] * 17), b'"}']
    with users.http("alice") as http:
        answer = http.post("/v1/jobs", content=iter(chunks), headers=JSON)
    assert answer.status_code == 413
    assert all_job_ids(users) == before


def test_a_queue_zip_naming_a_file_outside_its_folder_is_refused(users: Users, tmp_path: Path) -> None:
    archive = write_zip(
        tmp_path / "queue.zip", {"queue.json": queue_json(tiny()), "../escape.txt": b"not yours"}
    )
    before = all_job_ids(users)
    with pytest.raises(FarmError) as refused:
        users.alice.submit_queue(archive)
    assert refused.value.status == 422
    assert "invalid queue.zip" in str(refused.value) and "../escape.txt" in str(refused.value)
    assert all_job_ids(users) == before


def test_an_upload_that_is_not_a_zip_is_refused(users: Users, tmp_path: Path) -> None:
    fake = tmp_path / "queue.zip"
    fake.write_text(json.dumps([{"id": 1, "params": tiny()}]))
    before = all_job_ids(users)
    with pytest.raises(FarmError) as refused:
        users.alice.submit_queue(fake)
    assert refused.value.status == 422 and "invalid queue.zip" in str(refused.value)
    assert all_job_ids(users) == before


def test_a_queue_zip_with_one_bad_entry_stores_none_of_it(users: Users, tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "queue.zip", {"queue.json": queue_json(tiny(), tiny(video_length=6))})
    before = all_job_ids(users)
    with pytest.raises(FarmError) as refused:
        users.alice.submit_queue(archive)
    assert refused.value.status == 422 and "video_length: 6" in str(refused.value)
    assert all_job_ids(users) == before


def test_a_queue_priority_out_of_range_is_refused(users: Users, tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "queue.zip", {"queue.json": queue_json(tiny())})
    before = all_job_ids(users)
    with pytest.raises(FarmError) as refused:
        users.alice.submit_queue(archive, priority=101)
    assert refused.value.status == 422 and "priority" in str(refused.value)
    assert all_job_ids(users) == before


# --- jobs the pool can never run -----------------------------------------------------------------


def test_a_job_no_agent_can_ever_run_is_refused_with_409_naming_the_ram(users: Users) -> None:
    before = all_job_ids(users)
    answer = post_jobs(users, "alice", TOO_BIG)
    assert answer.status_code == 409
    error = answer.json()
    reason = " ".join(error["detail"])
    assert "wan2.2-t2v-a14b" in reason and "RAM" in reason and f"{NODE_RAM_GB:.1f} GiB" in reason
    assert "wait_for_capacity" in error["hint"]
    assert all_job_ids(users) == before


def test_the_same_job_waits_for_capacity_when_asked_and_says_why(users: Users) -> None:
    [job] = users.alice.submit([TOO_BIG], wait_for_capacity=True).jobs
    try:
        wait_until(lambda: users.alice.job(job.id).wait_reason is not None, 30, "a wait reason")
        waiting = users.alice.job(job.id)
        assert waiting.state == "queued" and waiting.agent is None
        assert waiting.wait_reason is not None and "RAM" in waiting.wait_reason
    finally:
        users.alice.cancel(job.id)


def test_canceling_a_queued_job_cancels_it_before_it_starts(users: Users) -> None:
    [job] = users.alice.submit([TOO_BIG], wait_for_capacity=True).jobs
    canceled = users.alice.cancel(job.id)
    assert canceled.state == "canceled"
    again = users.alice.job(job.id)
    assert again.state == "canceled" and again.started_at is None and again.attempts == 0


def test_canceling_a_finished_job_is_refused_with_409_and_leaves_it_finished(users: Users) -> None:
    [job] = users.alice.submit([tiny("flux-tiny")]).jobs
    done = wait_job(users.alice, job.id)
    assert done.state == "succeeded"
    with pytest.raises(FarmError) as refused:
        users.alice.cancel(job.id)
    assert refused.value.status == 409 and "already succeeded; nothing to cancel" in str(refused.value)
    after = users.alice.job(job.id)
    assert after.state == "succeeded" and [o.key for o in after.outputs] == [o.key for o in done.outputs]


# --- queue.zip, events, paging -------------------------------------------------------------------


def test_a_queue_zip_of_two_entries_makes_two_jobs_that_succeed(users: Users, tmp_path: Path) -> None:
    entries = [tiny("wan-tiny", prompt="from the queue"), tiny("flux-tiny", prompt="also queued")]
    archive = write_zip(tmp_path / "queue.zip", {"queue.json": queue_json(*entries)})
    submitted = users.alice.submit_queue(archive, priority=70)
    assert [job.model for job in submitted.jobs] == ["wan-tiny", "flux-tiny"]
    assert {job.priority for job in submitted.jobs} == {70}
    finished = [wait_job(users.alice, job.id) for job in submitted.jobs]
    assert [job.state for job in finished] == ["succeeded", "succeeded"]
    assert [job.settings["prompt"] for job in finished] == ["from the queue", "also queued"]
    assert [len(job.outputs) for job in finished] == [1, 1]


def test_a_jobs_event_stream_follows_it_to_the_end(users: Users) -> None:
    [job] = users.alice.submit([tiny("wan-tiny", seed=11)]).jobs
    with ThreadPoolExecutor(1) as pool:
        # The stream has no timeout of its own; a stream that never ends fails here.
        events = pool.submit(lambda: list(users.alice.events(job.id))).result(timeout=120)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and events[-1][1] == {"state": "succeeded"}
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert "output" in kinds and kinds.index("output") < len(kinds) - 2


def test_listing_by_state_pages_through_every_match_once(users: Users) -> None:
    for job in users.alice.submit([tiny("flux-tiny"), tiny("flux-tiny", seed=2)]).jobs:
        assert wait_job(users.alice, job.id).state == "succeeded"
    expected = [job.id for job in users.alice.jobs(states=["succeeded"], limit=500).jobs]
    assert len(expected) >= 2
    seen: list[JobSummary] = []
    before: str | None = None
    with users.http("alice") as http:
        while True:
            params: dict[str, Any] = {"state": "succeeded", "limit": 1} | (
                {"before": before} if before else {}
            )
            page = http.get("/v1/jobs", params=params).json()
            seen += [JobSummary.model_validate(job) for job in page["jobs"]]
            assert len(page["jobs"]) <= 1
            if page["next"] is None:
                break
            before = page["next"]
    assert [job.id for job in seen] == expected
    assert {job.state for job in seen} == {"succeeded"}


# --- the API's own description, the pool, health -------------------------------------------------


def test_openapi_describes_the_job_queue_agent_and_model_routes(users: Users) -> None:
    with users.http(None) as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/queues", "/v1/agents", "/v1/models"} <= paths.keys()
    assert {"get", "post"} <= paths["/v1/jobs"].keys()


def test_agents_lists_the_declared_gpu_with_its_declared_ram(users: Users) -> None:
    [agent] = users.alice.agents()
    assert agent.declared and agent.gpu_name == "RTX 4090" and agent.device == "cpu"
    assert agent.ram_total == NODE_RAM_GB * 1024**3
    assert agent.capability == "8.9"


def test_models_lists_the_catalogue_for_a_caller_with_a_key(users: Users) -> None:
    with users.http("bob") as http:
        answer = http.get("/v1/models")
    assert answer.status_code == 200
    listed = json.dumps(answer.json())
    assert "wan-tiny" in listed and "wan2.2-t2v-a14b" in listed


def test_the_farm_answers_its_own_host_names_only(users: Users) -> None:
    port = httpx.URL(users.farm.url).port
    with users.http("alice") as http:
        refused = http.get("/v1/jobs", headers={"Host": f"rebound.example:{port}"})
        assert refused.status_code == 400 and "does not serve the Host" in refused.json()["error"]
        assert http.get("/v1/jobs", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_healthz_answers_without_a_key(users: Users) -> None:
    with users.http(None) as http:
        answer = http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"ok": True, "agents": 1}


# --- WanGP model definitions added over REST ------------------------------------------------------

# A finetune of the tiny Wan with its own defaults: 3 steps and 5 frames unless a job says otherwise.
FEW_STEPS = {"model": {"architecture": "wan-tiny", "URLs": []}, "num_inference_steps": 3, "video_length": 5}


def test_an_admin_adds_a_wangp_definition_and_jobs_render_it_with_its_defaults(
    users: Users, tmp_path: Path
) -> None:
    with users.http("root") as http:
        added = http.post("/v1/models", params={"model_type": "wan-few-steps"}, json=FEW_STEPS)
        assert added.status_code == 201, added.text
        assert added.json()["wangp_model_types"][-1] == "wan-few-steps"
        assert "wan-few-steps" in {row["id"] for row in http.get("/v1/models").json()}
        again = http.post("/v1/models", params={"model_type": "wan-few-steps"}, json=FEW_STEPS)
        assert again.status_code == 200  # the same name replaces its definition
    [job] = users.alice.submit([{"model_type": "wan-few-steps", "prompt": "a lighthouse", "seed": 4}]).jobs
    done = wait_job(users.alice, job.id)
    assert done.state == "succeeded", done.error
    [output] = done.outputs
    video = users.alice.download(output.url, tmp_path / output.name)
    assert read_mp4(video).frame_count == 5  # the definition's video_length, rendered by the agent
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "wan-few-steps"
    assert metadata["num_inference_steps"] == 3


@pytest.mark.parametrize(
    ("who", "model_type", "body", "status", "says"),
    [
        ("alice", "mine", FEW_STEPS, 403, "adding a model needs an admin key"),
        (
            "root",
            "ovi-mine",
            {"model": {"architecture": "ovi"}},
            422,
            "architecture 'ovi' is not supported yet",
        ),
        ("root", "no-model", {"prompt": "x"}, 422, "a JSON object with a 'model' object"),
        ("root", "../up", FEW_STEPS, 422, "1-64 letters, digits"),
        ("root", "wan-tiny", FEW_STEPS, 422, "is a catalogue id"),
    ],
)
def test_a_definition_the_farm_cannot_add_is_refused_and_nothing_is_written(
    users: Users, who: str, model_type: str, body: dict[str, Any], status: int, says: str
) -> None:
    with users.http(who) as http:
        answer = http.post("/v1/models", params={"model_type": model_type}, json=body)
        assert answer.status_code == status, answer.text
        assert says in answer.text
        listed = {row["id"] for row in http.get("/v1/models").json()}
        assert model_type not in listed or model_type == "wan-tiny"  # a catalogue model stays itself
    assert not (Path(os.environ[MODELS_ENV]) / f"{model_type}.json").exists()
