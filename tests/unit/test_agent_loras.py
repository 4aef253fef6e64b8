"""A farm agent renders the LoRAs a job names from the farm's LoRA folder (or its node's own
$WANFARM_LORAS), records each one's sha256 and weights in the output, and refuses a LoRA it cannot
find by name."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import EventKind
from gpu_agent.storage import LocalStore
from models.tiny_loras import LoraLayout, save_tiny_lora
from processing.metadata import read_metadata
from tests.unit.test_agent_storage import JOB, run_to_the_end
from tests.unit.tiny_agent import SETTINGS, agent

LORA = {"activated_loras": ["style.safetensors"], "loras_multipliers": "0.5", "num_inference_steps": 2}


@pytest.fixture
def lora_worker(
    tmp_path: Path, cache_dir: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GpuAgent, Path]]:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    monkeypatch.delenv("WANFARM_LORAS", raising=False)
    lora = save_tiny_lora(
        tmp_path / "loras" / "qwen" / "style.safetensors", "qwen-image", LoraLayout.ORIGINAL
    )
    made = agent(tmp_path, cache_dir, lora_dir=tmp_path / "loras")
    yield made, lora
    made.workspace.release()


def test_a_job_s_lora_is_found_in_the_farm_s_folder_and_recorded_in_the_output(
    lora_worker: tuple[GpuAgent, Path], tmp_path: Path
) -> None:
    worker, lora = lora_worker
    end = run_to_the_end(worker, settings=SETTINGS | LORA)
    assert end.kind is EventKind.SUCCEEDED, end.error

    (output,) = [obj for obj in LocalStore(tmp_path / "objects").list(f"jobs/{JOB}/outputs/")]
    metadata = read_metadata(tmp_path / "objects" / output.key)
    assert metadata is not None
    assert metadata["activated_loras"] == ["style.safetensors"]
    (applied,) = metadata["wanfarm"]["loras"]
    assert applied["sha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert (applied["multipliers"], applied["weights"]) == ("0.5", [0.5, 0.5])


def test_a_lora_the_node_does_not_hold_fails_the_job_naming_it(lora_worker: tuple[GpuAgent, Path]) -> None:
    worker, _ = lora_worker
    end = run_to_the_end(worker, settings=SETTINGS | LORA | {"activated_loras": ["missing.safetensors"]})
    assert end.kind is EventKind.FAILED
    assert "missing.safetensors" in (end.error or "")
