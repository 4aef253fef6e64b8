"""`wanfarm models`: the catalogue, with what each model needs at its default size."""

from __future__ import annotations

import json

from models.catalogue import ModelPreset, catalogue
from models.memory import GIB, JobSize, estimate
from models.profiles import Profile
from models.settings import RESOLUTION


def models_command(as_json: bool) -> int:
    rows = [_row(preset) for preset in catalogue().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'id':<24} {'task':<5} {'weights':>8} {'VRAM p1':>8} {'VRAM p5':>8} {'RAM p5':>7}  {'default size':<16} wangp ids"
    print(header)
    for row in rows:
        print(
            f"{row['id']:<24} {row['task']:<5} {row['weights_gb']:>7.1f}G {row['vram_gb']['1']:>7.1f}G "
            f"{row['vram_gb']['5']:>7.1f}G {row['ram_gb']['5']:>6.1f}G  {row['default_size']:<16} "
            f"{','.join(row['wangp_model_types']) or '-'}"
        )
    return 0


def _row(preset: ModelPreset) -> dict[str, object]:
    match = RESOLUTION.match(preset.defaults.resolution)
    assert match is not None
    frames = preset.defaults.video_length if preset.frames else 1
    size = JobSize(int(match[1]), int(match[2]), frames)
    needs = {p.value: estimate(preset, p, size) for p in Profile}
    return {
        "id": preset.id,
        "name": preset.name,
        "family": preset.family,
        "task": preset.task.value,
        "pipeline": preset.pipeline,
        "repo": preset.repo,
        "weights_gb": round(preset.weight_bytes / GIB, 2),
        "fps": preset.fps,
        "frames": preset.frames.describe() if preset.frames else None,
        "default_size": f"{preset.defaults.resolution}x{frames}" if frames > 1 else preset.defaults.resolution,
        "vram_gb": {p: round(n.vram_bytes / GIB, 1) for p, n in needs.items()},
        "ram_gb": {p: round(n.ram_bytes / GIB, 1) for p, n in needs.items()},
        "wangp_model_types": preset.wangp_model_types,
    }
