"""Jobs over HTTP on a multi-node Ray cluster of declared GPUs land where they can run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.client import FarmClient, FarmError
from controller.farm import Farm
from models.catalogue import get_model
from models.tiny_ltx2 import write_distilled_lora
from processing.metadata import read_metadata
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job

SMALL = NodeSpec(("RTX 3060",), ram_gb=16)  # 12 GB card, 16 GB RAM: Wan 14B needs 21.9 GiB at profile 5
BIG = NodeSpec(("RTX 4090",), ram_gb=32)  # 24 GB card, 32 GB RAM: fits Wan 14B, not Wan 2.2 A14B


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    with pytest.MonkeyPatch.context() as patch:
        # Set before the cluster starts, so its raylets and agents inherit it; undone after the module.
        patch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: a real model fails fast, it does not hang
        with (
            ray_cluster([SMALL, BIG]) as cluster,
            # greedy, not the default wanfarm: these tests state greedy's rules (each job on the best
            # idle agent, hot before faster). wanfarm's choices rest on estimated speeds, and these
            # declared GPUs all render on the same CPU; its rules are tested on snapshots
            # (test_policy_wanfarm).
            running_farm(
                tmp_path_factory.mktemp("farm"),
                cluster.address,
                agents=2,
                policy="greedy",
                lora_dir=ltx2_stage_loras(tmp_path_factory.mktemp("loras")),
            ) as running,
        ):
            yield running


def ltx2_stage_loras(root: Path) -> Path:
    """A LoRA folder holding the tiny LTX-2's distilled LoRA, which its second stage weights."""
    (root / "ltx2").mkdir()
    write_distilled_lora(root / "ltx2")
    return root


@pytest.fixture()
def client(farm: Farm) -> Iterator[FarmClient]:
    http = FarmClient(farm.url)
    yield http
    http.close()


def agent_of(farm: Farm, gpu: str) -> str:
    return next(a.agent_id for a in farm.agent_listing() if a.gpu_name == gpu)


def test_the_pool_shows_both_declared_gpus_on_their_nodes(farm: Farm) -> None:
    agents = farm.agent_listing()
    assert sorted(a.gpu_name for a in agents) == ["RTX 3060", "RTX 4090"]
    assert all(a.declared and a.device == "cpu" for a in agents)
    assert len({a.node_id for a in agents}) == 2


def test_a_job_only_the_big_node_can_run_goes_there(farm: Farm, client: FarmClient) -> None:
    settings = {"model_type": "t2v", "prompt": "x", "resolution": "832x480", "video_length": 81}
    [job] = client.submit([settings]).jobs
    done = wait_job(client, job.id)
    assert done.agent == agent_of(farm, "RTX 4090")
    # The weights cannot be fetched here, so the attempt fails, and says so.
    assert done.state == "failed" and "could not fetch wan2.1-t2v-14b" in (done.error or "")


def test_a_job_no_agent_can_ever_run_is_refused_with_the_reason(client: FarmClient) -> None:
    settings = {"model_type": "t2v_2_2", "prompt": "x", "resolution": "832x480", "video_length": 81}
    with pytest.raises(FarmError) as refused:
        client.submit([settings])
    assert refused.value.status == 409
    assert f"{get_model('t2v_2_2').id}" in str(refused.value) and "RAM" in str(refused.value)


def test_the_agent_with_the_model_hot_is_preferred_over_a_faster_one(farm: Farm, client: FarmClient) -> None:
    # Both agents render wan-tiny, then the faster one switches to flux-tiny: the next wan-tiny job
    # goes to the slower card that still has it hot, not to the idle faster one.
    first = client.submit([tiny("wan-tiny", seed=1), tiny("wan-tiny", seed=2)]).jobs
    placed = {wait_job(client, job.id).agent for job in first}
    assert placed == {agent_of(farm, "RTX 3060"), agent_of(farm, "RTX 4090")}
    [flux] = client.submit([tiny("flux-tiny")]).jobs
    assert wait_job(client, flux.id).agent == agent_of(farm, "RTX 4090")
    [again] = client.submit([tiny("wan-tiny", seed=3)]).jobs
    done = wait_job(client, again.id)
    assert done.state == "succeeded" and done.agent == agent_of(farm, "RTX 3060")


def test_every_output_of_a_batch_arrives(farm: Farm, client: FarmClient, tmp_path: Path) -> None:
    models = [
        "wan-tiny",
        "ltx-tiny",
        "flux-tiny",
        "qwen-image-tiny",
        "flux-kontext-tiny",
        "flux2-klein-tiny",
        "wan-vace-tiny",
        "hunyuan15-tiny",
        "ltx2-tiny",
        "stable-audio3-tiny",
        "ace-step-tiny",
        "z-image-tiny",
        "k5-tiny",
        "krea2-tiny",
        "ideogram4-tiny",
        "chroma-tiny",
    ]
    # Each family once: 17 jobs keep both agents busy (the last check), in half the time of two rounds.
    batch = [tiny(model, seed=i) for i, model in enumerate(models)]
    # LTX-2's two render stages (models.ltx2_stages), its distilled LoRA from the agents' LoRA folder.
    batch.append(tiny("ltx2-tiny", seed=7, guidance_phases=2))
    jobs = client.submit(batch).jobs
    finished = [wait_job(client, job.id) for job in jobs]
    assert [job.state for job in finished] == ["succeeded"] * len(batch)
    for job in finished:
        [output] = job.outputs
        path = client.download(output.url, tmp_path / output.name)
        assert path.stat().st_size > 0
    two_stages = read_metadata(tmp_path / finished[-1].outputs[0].name)
    assert two_stages is not None and two_stages["guidance_phases"] == 2
    assert [lora["multipliers"] for lora in two_stages["wanfarm"]["loras"]] == ["0;1"]
    assert {job.agent for job in finished} == {a.agent_id for a in farm.agent_listing()}
