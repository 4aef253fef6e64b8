"""The GPU classes file of `wanfarm up --gpu-classes FILE`: the kinds of node the autoscaler can add.

JSON: `{"classes": [{"name", "gpu", "max_gpus", "ram_gb", "gpus_per_node", "idle_release_s",
"hot_release_s"}, ...], "scale_up_s", "hot_starts", "hot_window_s"}`, classes cheapest first (a job
asks the first that can run it). The Helm chart writes it from its worker groups.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.gpus import UnknownGpu
from scheduler.demand import GpuClass, ScalingRules


class GpuClassesError(ValueError):
    """A classes file that cannot be used; the message names the file and each problem."""


class _Class(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    gpu: str
    max_gpus: int = Field(ge=0)
    ram_gb: float = Field(default=64.0, gt=0)
    gpus_per_node: int = Field(default=1, ge=1)
    idle_release_s: float = Field(default=300.0, gt=0)
    hot_release_s: float = Field(default=900.0, gt=0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[_Class] = Field(min_length=1)
    scale_up_s: float = Field(default=180.0, ge=0)
    hot_starts: int = Field(default=2, ge=1)
    hot_window_s: float = Field(default=1800.0, gt=0)


def load_gpu_classes(path: Path) -> ScalingRules:
    """The file's classes and rules; GpuClassesError naming what is wrong."""
    try:
        data = json.loads(path.read_text())
        spec = _File.model_validate(data)
    except OSError as error:
        raise GpuClassesError(f"{path}: cannot read it: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise GpuClassesError(f"{path}: not JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise GpuClassesError(f"{path}: {problems}") from None
    names = [c.name for c in spec.classes]
    if len(set(names)) != len(names):
        raise GpuClassesError(f"{path}: a class name is given twice: {', '.join(names)}")
    try:
        classes = tuple(GpuClass(**c.model_dump()) for c in spec.classes)
    except (UnknownGpu, ValueError) as error:
        raise GpuClassesError(f"{path}: {error}") from None
    return ScalingRules(classes, spec.scale_up_s, spec.hot_starts, spec.hot_window_s)
