"""The catalogue as listed to users, by `wanfarm models` and `GET /v1/models` alike."""

from __future__ import annotations

from dataclasses import dataclass

from models.catalogue import ModelPreset
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


def model_row(preset: ModelPreset) -> ModelRow:
    """The listing of one preset, with its memory needs under every profile."""
    match = RESOLUTION.match(preset.defaults.resolution)
    assert match is not None  # the catalogue holds "WxH" defaults
    frames = preset.defaults.video_length if preset.frames else 1
    size = JobSize(int(match[1]), int(match[2]), frames)
    shown = f"{preset.defaults.resolution}x{frames}" if frames > 1 else preset.defaults.resolution
    if preset.audio is not None:  # a waveform: its default seconds, sized as samples x 1
        size = JobSize(int(preset.audio.default_seconds * preset.audio.sample_rate), 1)
        shown = f"{preset.audio.default_seconds:g} s"
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
        default_size=shown,
        vram_gb={p: round(n.vram_bytes / GIB, 1) for p, n in needs.items()},
        ram_gb={p: round(n.ram_bytes / GIB, 1) for p, n in needs.items()},
        wangp_model_types=preset.wangp_model_types,
    )
