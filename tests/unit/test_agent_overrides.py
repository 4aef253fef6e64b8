"""A farm agent renders a job with the attention kernel and profile it forces (WanGP's
override_attention and override_profile), records them in the output, reports the kernels it runs,
and fails a job whose forced kernel it does not have instead of rendering it with another."""

from __future__ import annotations

from pathlib import Path

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import EventKind
from gpu_agent.storage import LocalStore
from models.attention import AttentionMode
from models.profiles import Profile
from processing.metadata import read_metadata
from tests.job_records import placed_task
from tests.unit.test_agent_storage import JOB, run_to_the_end
from tests.unit.tiny_agent import SETTINGS

FORCED = {"override_attention": "sdpa", "override_profile": 3}


def test_a_cpu_agent_renders_with_the_forced_sdpa_and_records_what_was_asked_and_what_ran(
    worker: GpuAgent, tmp_path: Path
) -> None:
    end = run_to_the_end(worker, task=placed_task(JOB, SETTINGS | FORCED, profile=Profile.P3))
    assert end.kind is EventKind.SUCCEEDED, end.error
    [output] = LocalStore(tmp_path / "objects").list(f"jobs/{JOB}/outputs/")
    metadata = read_metadata(tmp_path / "objects" / output.key)
    assert metadata is not None
    assert (metadata["override_attention"], metadata["override_profile"]) == ("sdpa", 3)
    assert metadata["wanfarm"]["attention"] == "sdpa"  # the kernel the transformer called
    assert metadata["wanfarm"]["profile"] == "none (cpu)"  # mmgp profiles need CUDA


def test_a_kernel_the_agent_lacks_fails_the_job_naming_the_key(worker: GpuAgent) -> None:
    assert worker.inventory().attention_modes == (AttentionMode.SDPA,)  # it renders on the CPU
    end = run_to_the_end(worker, settings=SETTINGS | {"override_attention": "sage"})
    assert end.kind is EventKind.FAILED
    assert "override_attention: attention 'sage'" in (end.error or "")


def test_a_job_placed_at_another_profile_than_it_forces_is_not_rendered(worker: GpuAgent) -> None:
    end = run_to_the_end(worker, task=placed_task(JOB, SETTINGS | FORCED, profile=Profile.P4))
    assert end.kind is EventKind.FAILED
    assert "override_profile forces profile 3; the job was placed at 4" in (end.error or "")
