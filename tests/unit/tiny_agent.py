"""A real GpuAgent on the tiny models, declared as an RTX 4090 (so it renders on the CPU), for the
agent's unit tests; conftest.py serves it as the `worker` fixture."""

from __future__ import annotations

from pathlib import Path

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentConfig
from gpu_agent.storage import StorageConfig

SETTINGS = {"model_type": "qwen-image-tiny", "prompt": "a fox", "seed": 3}


def agent(
    tmp_path: Path,
    cache_dir: Path,
    agent_id: str = "n1-gpu0",
    lora_dir: Path | None = None,
    checkpoint_steps: int | None = None,
) -> GpuAgent:
    config = AgentConfig(
        agent_id=agent_id,
        node_id="n1",
        gpu_index=0,
        storage=StorageConfig(kind="local", root=tmp_path / "objects"),
        cache_dir=cache_dir,  # the session's: each tiny model is built once
        declared_gpu="RTX 4090",
        lora_dir=lora_dir,
        checkpoint_steps=checkpoint_steps,
    )
    return GpuAgent(config)
