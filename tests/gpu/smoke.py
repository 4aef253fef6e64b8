"""GPU smoke check: every tiny model on CUDA under each memory profile (through mmgp) and each
attention mode the card allows, reporting the kernel that really ran and the peak VRAM.

Run on a CUDA machine: `make gpu-smoke` (or `python tests/gpu/smoke.py [--json FILE]`). It
exits 0 when every combination ran, 1 when one failed, 3 when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

MODELS = ("wan-tiny", "ltx-tiny", "flux-tiny", "qwen-image-tiny")


@dataclass
class Row:
    model: str
    profile: str
    requested: str
    ran: str
    peak_vram_mib: float
    seconds: float
    frames_shape: str
    error: str = ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--profiles", help="comma-separated, e.g. 1,4 (default: all seven)")
    args = parser.parse_args()

    import torch

    from models import attention
    from models.attention import AttentionMode
    from models.catalogue import get_model
    from models.device import detect_gpus
    from models.profiles import Profile
    from models.request import GenerationRequest
    from models.runner import PipelineHost
    from models.weights import WeightCache

    gpus = detect_gpus()
    if not gpus:
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 3
    gpu = gpus[0]
    usable = attention.installed_modes() & attention.allowed_modes(gpu.caps)
    print(
        f"torch {torch.__version__}, GPU {gpu.name} sm{gpu.capability[0]}{gpu.capability[1]} ({gpu.arch}), "
        f"{gpu.total_vram_bytes / 2**30:.1f} GiB; dtype {gpu.caps.compute_dtype}"
    )
    print(
        f"attention installed: {sorted(m.value for m in attention.installed_modes())}; "
        f"allowed: {sorted(m.value for m in attention.allowed_modes(gpu.caps))}; "
        f"auto -> {attention.choose(AttentionMode.AUTO, gpu.caps).value}"
    )
    modes = [AttentionMode.AUTO, *sorted(usable, key=lambda m: m.value)]
    profiles = [Profile(p) for p in args.profiles.split(",")] if args.profiles else list(Profile)

    rows: list[Row] = []
    cache = WeightCache(Path(tempfile.mkdtemp(prefix="wanfarm-smoke-")))
    for model_id in args.models.split(","):
        preset = get_model(model_id)
        width, height = (int(s) for s in preset.defaults.resolution.split("x"))
        frames = preset.defaults.video_length if preset.frames else 1
        request = GenerationRequest(
            prompt="a smoke test",
            negative_prompt="",
            width=width,
            height=height,
            frames=frames,
            steps=preset.defaults.num_inference_steps,
            guidance_scale=preset.defaults.guidance_scale,
            flow_shift=preset.defaults.flow_shift,
            sample_solver=preset.defaults.sample_solver,
            seed=0,
        )
        for mode in modes:
            host = PipelineHost(cache, attention_mode=mode)
            for profile in profiles:
                started = time.monotonic()
                try:
                    out = host.generate(preset, request, profile)
                    rows.append(
                        Row(
                            model_id,
                            profile.value,
                            mode.value,
                            out.info.attention,
                            round(out.info.peak_vram_bytes / 2**20, 1),
                            round(time.monotonic() - started, 2),
                            str(out.frames.shape),
                        )
                    )
                except Exception as error:  # report every combination, keep going
                    rows.append(
                        Row(
                            model_id,
                            profile.value,
                            mode.value,
                            "-",
                            0.0,
                            round(time.monotonic() - started, 2),
                            "-",
                            f"{type(error).__name__}: {error}"[:300],
                        )
                    )
                    traceback.print_exc(limit=3)
                print(_line(rows[-1]), flush=True)
            host.unload()

    failed = [r for r in rows if r.error]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} combinations ran")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 1 if failed else 0


def _line(row: Row) -> str:
    status = "ok" if not row.error else f"FAILED {row.error}"
    return (
        f"{row.model:<16} profile {row.profile:<3} attention {row.requested:<6} ran {row.ran:<8} "
        f"peak {row.peak_vram_mib:>8.1f} MiB  {row.seconds:>6.2f}s  {row.frames_shape}  {status}"
    )


if __name__ == "__main__":
    sys.exit(main())
