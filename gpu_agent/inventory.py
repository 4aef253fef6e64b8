"""An agent's inventory: its GPU probed through torch, or declared from the GPU table."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Mapping, Sequence

import psutil

from gpu_agent.messages import AgentConfig, AgentInventory
from gpu_agent.storage import StorageHealth
from models.catalogue import ModelPreset, catalogue
from models.gpus import find_gpu
from models.weights import WeightCache
from processing import plugins

# How old the list of installed plugins an agent reports may be: a pip install shows within this.
PLUGINS_MAX_AGE_S = 10.0


def probe_inventory(
    config: AgentConfig,
    cache: WeightCache,
    hot_model: str | None,
    current: tuple[str, int] | None,
    storage: StorageHealth,
) -> AgentInventory:
    """The inventory now; a declared GPU takes the table's figures, and its VRAM is all free."""
    memory = psutil.virtual_memory()
    cache.root.mkdir(parents=True, exist_ok=True)
    common = {
        "agent_id": config.agent_id,
        "node_id": config.node_id,
        "hostname": socket.gethostname(),
        "gpu_index": config.gpu_index,
        "ram_total": config.declared_ram_bytes or memory.total,
        "ram_free": memory.available,
        "disk_free": shutil.disk_usage(cache.root).free,
        "cached_models": loadable(cache.cached_ids(), catalogue()),
        "hot_model": hot_model,
        "current_job": current[0] if current else None,
        "current_attempt": current[1] if current else None,
        "cache_bytes": cache.cached_bytes(),
        "storage_errors": storage.errors,
        "last_storage_error": storage.last_error,
        # Read again each time: a plugin pip-installed on the node shows without a restart.
        "plugins": installed_plugins(),
    }
    if config.declared_gpu is not None:
        spec = find_gpu(config.declared_gpu)
        return AgentInventory(
            gpu_name=spec.name,
            arch=spec.arch,
            capability=spec.capability,
            vram_total=spec.vram_bytes,
            vram_free=spec.vram_bytes,
            half_tflops=spec.half_tflops,
            declared=True,
            device="cpu",
            utilization=1.0 if current else 0.0,
            **common,
        )
    from models.device import detect_gpus  # torch: only on agents that probe a real device

    gpus = detect_gpus()
    if not gpus:
        raise RuntimeError(
            f"agent {config.agent_id}: no CUDA device is visible; declare its GPU (--declare-gpu) "
            "to run a CPU agent with a declared inventory"
        )
    gpu = gpus[0]  # Ray gives each agent one GPU, visible as device 0
    return AgentInventory(
        gpu_name=gpu.spec.name if gpu.spec else gpu.name,
        arch=gpu.arch,
        capability=gpu.capability,
        vram_total=gpu.total_vram_bytes,
        vram_free=gpu.free_vram_bytes,
        half_tflops=gpu.spec.half_tflops if gpu.spec else 10.0,
        declared=False,
        device="cuda",
        utilization=_utilization(),
        **common,
    )


def installed_plugins() -> tuple[str, ...]:
    """The names of the plugins installed on this node, read from the environment now."""
    plugins.refresh_stale(PLUGINS_MAX_AGE_S)
    return tuple(info.name for info in plugins.installed())


def _utilization() -> float:
    """The card's busy share over the last sample period; 0 when NVML is not available."""
    import torch

    try:
        return float(torch.cuda.utilization()) / 100.0
    except Exception:  # torch reads it through pynvml, which a node may lack
        return 0.0


def loadable(cached: Sequence[str], presets: Mapping[str, ModelPreset]) -> tuple[str, ...]:
    """The cached models this node loads without a fetch: a WanGP definition's own transformer file
    is only half of it, so it counts while its base model's folder is cached too."""
    have = set(cached)
    return tuple(
        model_id
        for model_id in cached
        if (preset := presets.get(model_id)) is None or preset.derived_from in (None, *have)
    )
