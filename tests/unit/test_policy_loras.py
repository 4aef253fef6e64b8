"""The scheduler weighs a job's LoRAs: an agent that lacks one fetches it over its link first, so
among equal agents the one holding it wins (the pure policy over hand-built snapshots), and the
dispatcher places a stored job by what the agents report holding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controller.store import JobStore
from models.loras import LoraNeed, held_key
from scheduler.cost import lora_seconds
from scheduler.snapshot import PendingJob, Snapshot
from scheduler.wanfarm.policy import WanfarmPolicy
from tests.declared_agents import declared_agent
from tests.job_records import new_job, pending_job
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher

NOW = 10_000.0
SHA = "a" * 64
STYLE = LoraNeed("style.safetensors", SHA, 800 * 1024**2)


def placed(pending: PendingJob, *agents: object) -> str:
    snapshot = Snapshot(NOW, tuple(agents), (pending,))  # type: ignore[arg-type]
    [assignment] = WanfarmPolicy().place(snapshot).assignments
    return assignment.agent_id


def test_among_equal_agents_the_one_holding_the_job_s_lora_takes_it() -> None:
    lacking = declared_agent("RTX 4090", "a-lacks")
    holding = replace(declared_agent("RTX 4090", "b-holds"), loras=frozenset({held_key(STYLE.name, SHA)}))
    with_lora = replace(pending_job(submitted_at=NOW), loras=(STYLE,))
    assert placed(with_lora, lacking, holding) == "b-holds"
    # Without the LoRA the tie goes to the first agent: the LoRA is what decided it.
    assert placed(pending_job(submitted_at=NOW), lacking, holding) == "a-lacks"


def test_another_upload_of_the_same_name_is_not_the_lora_the_job_names() -> None:
    other = replace(declared_agent("RTX 4090", "b-other"), loras=frozenset({held_key(STYLE.name, "b" * 64)}))
    assert lora_seconds((STYLE,), other) == STYLE.bytes / other.net_bytes_per_s
    assert lora_seconds((STYLE,), replace(other, loras=frozenset({STYLE.name}))) == 0.0  # its folder's


def test_a_hub_or_folder_lora_is_matched_by_file_name() -> None:
    by_name = LoraNeed("style.safetensors", None, 300 * 1024**2)
    agent = declared_agent("RTX 4090", "a")
    assert lora_seconds((by_name,), agent) == by_name.bytes / agent.net_bytes_per_s
    assert lora_seconds((by_name,), replace(agent, loras=frozenset({held_key(by_name.name, SHA)}))) == 0.0


def test_a_dispatch_round_places_a_stored_lora_job_on_the_agent_that_reports_holding_it(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster(gpus=1, nodes_count=2)  # two equal agents, each on its own node (own cache)
    with JobStore(tmp_path / "jobs.db") as store:
        dispatcher = fake_dispatcher(store, cluster, tmp_path, policy=WanfarmPolicy(), clock=lambda: NOW)
        holder = cluster.agents["node0002-gpu0"]
        holder._inventory = replace(holder._inventory, loras=(held_key(STYLE.name, SHA),))
        [job] = store.add_jobs([replace(new_job(), loras=(STYLE,))], NOW)
        assert store.queued_jobs([job.id])[0].loras == (STYLE,)  # on the pending record, as submitted

        dispatcher.tick()

        placed_job = store.get(job.id)
    assert placed_job is not None and placed_job.agent_id == "node0002-gpu0"
