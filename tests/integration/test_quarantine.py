"""A node whose cached weights are corrupt, on a real Ray cluster of two declared GPUs: its jobs fail
there and finish on the other node, not charged; the agent is quarantined (shown in /v1/agents and
/metrics), gets no new work, fails its probe job, and an admin's POST /v1/agents/{id}/release gives
it work again."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from controller.cli.client import FarmClient
from controller.farm import Farm
from controller.quarantine import PROBE_OWNER
from controller.schemas import AgentOut
from models.catalogue import get_model
from models.weights import WeightCache
from scheduler.quarantine import QuarantineRules
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

CARD = NodeSpec(("RTX 4090",))
RULES = QuarantineRules(probe_cooldown_s=3.0)
RETRIED = "; retried elsewhere, not charged"


def test_a_node_with_corrupt_weights_is_quarantined_its_jobs_finish_elsewhere_and_an_admin_releases_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "farm"
    with (
        ray_cluster([CARD, CARD]) as cluster,
        # greedy: each job on an idle agent, so the broken one keeps being offered work until held.
        # A short cool-down, so that a probe runs within the test.
        running_farm(data, cluster.address, agents=2, policy="greedy", quarantine_rules=RULES) as farm,
    ):
        client = FarmClient(farm.url)
        bad, good = sorted(farm.agent_listing(), key=lambda agent: agent.agent_id)
        corrupt = _corrupt_cached_weights(data / "weights" / bad.node_id[:12])

        jobs = client.submit([tiny(seed=n) for n in range(8)]).jobs
        done = [wait_job(client, job.id, timeout_s=300) for job in jobs]

        assert [job.state for job in done] == ["succeeded"] * 8, [job.error for job in done]
        retried = [job for job in done if job.attempt_errors]
        assert len(retried) >= 3, "three failures on the broken agent quarantine it"
        for job in retried:
            assert job.agent == good.agent_id and job.attempts == 2
            assert f"on {bad.agent_id}:" in job.attempt_errors[0]
            assert job.attempt_errors[0].endswith(RETRIED)

        held = _agent(client, bad.agent_id).quarantine
        assert held is not None and held.kind == "failures"
        assert "failed attempts in 10 min of models other agents rendered (wan-tiny)" in held.reason
        assert _quarantined(farm) == {bad.agent_id: ("failures", 1.0), good.agent_id: ("none", 0.0)}

        # Held: new work goes to the other agent only.
        [more] = client.submit([tiny(seed=10)]).jobs
        more = wait_job(client, more.id)
        assert (more.state, more.agent, more.attempts) == ("succeeded", good.agent_id, 1)

        # Its probe job, the farm's own, fails there as the users' jobs did: still held, backing off.
        wait_until(lambda: _probes_failed(client, bad.agent_id) >= 1, 60, "a failed probe")
        probe = next(job for job in client.jobs(["failed"]).jobs if job.owner == PROBE_OWNER)
        assert (probe.agent, probe.model, probe.attempts) == (bad.agent_id, "wan-tiny", 1)
        assert probe.error == retried[0].attempt_errors[0].split(": ", 1)[1].removesuffix(RETRIED)

        request = urllib.request.Request(f"{farm.url}/v1/agents/{bad.agent_id}/release", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        assert _agent(client, bad.agent_id).quarantine is None
        assert _quarantined(farm)[bad.agent_id] == ("none", 0.0)
        # Released (and its weights repaired), it renders again.
        shutil.rmtree(corrupt)
        again = [wait_job(client, job.id) for job in client.submit([tiny(seed=20), tiny(seed=21)]).jobs]
        assert sorted((job.state, job.agent, job.attempts) for job in again) == sorted(
            [("succeeded", bad.agent_id, 1), ("succeeded", good.agent_id, 1)]
        )
        client.close()


def _corrupt_cached_weights(node_cache: Path) -> Path:
    """The tiny Wan's weights complete in the node's cache, its transformer's bytes then garbage;
    the model's folder."""
    folder = WeightCache(node_cache).ensure(get_model("wan-tiny"))
    [weights] = (folder / "transformer").glob("*.safetensors")
    weights.write_bytes(b"\xff" * weights.stat().st_size)
    return folder


def _probes_failed(client: FarmClient, agent_id: str) -> int:
    held = _agent(client, agent_id).quarantine
    return held.probes_failed if held is not None else -1


def _agent(client: FarmClient, agent_id: str) -> AgentOut:
    return next(agent for agent in client.agents() if agent.agent_id == agent_id)


def _quarantined(farm: Farm) -> dict[str, tuple[str, float]]:
    with urllib.request.urlopen(f"{farm.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "wanfarm_agent_quarantined"]
    return {s.labels["agent"]: (s.labels["kind"], s.value) for s in family.samples}
