"""`wanfarm models`: the catalogue, with what each model needs at its default size."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from models.catalogue import ModelPreset, catalogue
from models.memory import GIB, JobSize, estimate
from models.profiles import Profile
from models.settings import RESOLUTION


@dataclass(frozen=True)
class ModelRow:
    """One model as listed: what it is and, per profile, the GiB it needs at its default size."""

    id: str
    name: str
    family: str
    task: str
    pipeline: str
    repo: str | None
    weights_gb: float
    fps: int | None
    frames: str | None
    default_size: str
    vram_gb: dict[str, float]
    ram_gb: dict[str, float]
    wangp_model_types: list[str]


def models_command(as_json: bool) -> int:
    rows = [model_row(preset) for preset in catalogue().values()]
    if as_json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
    print(
        f"{'id':<24} {'task':<5} {'weights':>8} {'VRAM p1':>8} {'VRAM p5':>8} {'RAM p5':>7}  "
        f"{'default size':<16} wangp ids"
    )
    for row in rows:
        print(
            f"{row.id:<24} {row.task:<5} {row.weights_gb:>7.1f}G {row.vram_gb['1']:>7.1f}G "
            f"{row.vram_gb['5']:>7.1f}G {row.ram_gb['5']:>6.1f}G  {row.default_size:<16} "
            f"{','.join(row.wangp_model_types) or '-'}"
        )
    return 0


def model_row(preset: ModelPreset) -> ModelRow:
    """The listing of one preset, with its memory needs under every profile."""
    match = RESOLUTION.match(preset.defaults.resolution)
    assert match is not None  # the catalogue holds "WxH" defaults
    frames = preset.defaults.video_length if preset.frames else 1
    size = JobSize(int(match[1]), int(match[2]), frames)
    needs = {p.value: estimate(preset, p, size) for p in Profile}
    return ModelRow(
        id=preset.id,
        name=preset.name,
        family=preset.family,
        task=preset.task.value,
        pipeline=preset.pipeline,
        repo=preset.repo,
        weights_gb=round(preset.weight_bytes / GIB, 2),
        fps=preset.fps,
        frames=preset.frames.describe() if preset.frames else None,
        default_size=f"{preset.defaults.resolution}x{frames}" if frames > 1 else preset.defaults.resolution,
        vram_gb={p: round(n.vram_bytes / GIB, 1) for p, n in needs.items()},
        ram_gb={p: round(n.ram_bytes / GIB, 1) for p, n in needs.items()},
        wangp_model_types=preset.wangp_model_types,
    )
