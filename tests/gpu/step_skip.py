"""Step skipping at real size on the GPU: a Wan 2.1 1.3B transformer (its published config, random
weights, built as tests/gpu/calibrate.py builds it) denoises 30 steps with classifier-free guidance
as diffusers' WanPipeline does (a "cond" then an "uncond" pass a step, UniPC in flow mode), plain and
under each cache of models.step_cache_hook, with the 1.3B's published figures.

For each case it prints the steps run and skipped (conditional pass), the denoising wall time, the
speed-up over the plain loop, and how far the final latents moved. TeaCache reads the change of the
time embedding between steps; random weights make it change far more than a trained model's, so it
may skip nothing here (the median change is printed with it).

Run on a CUDA machine: `python tests/gpu/step_skip.py [--json FILE] [--size 832x480x33]
[--steps 30]`. Exit 3 without CUDA, 1 when a case skips other steps than its plan names.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

from tests.gpu.random_weights import WAN_1_3B, random_model

TEXT_TOKENS, TEXT_DIM = 512, 4096
CASES = (
    ("plain", None, 0.0),
    ("mag", "mag", 1.5),
    ("mag", "mag", 2.0),
    ("mag", "mag", 2.5),
    ("tea", "tea", 2.0),
)


@dataclass
class Row:
    case: str
    size: str
    steps: int
    steps_run: int
    steps_skipped: int
    planned_run: int
    seconds: float
    speedup: float
    max_abs_diff: float  # final latents against the plain loop's
    median_time_change: float  # TeaCache's input: mean |e_i - e_(i-1)| / mean |e_(i-1)|


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--size", default="832x480x33", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 3
    width, height, frames = (int(part) for part in args.size.split("x"))
    rows = _measure(width, height, frames, args.steps)
    for row in rows:
        print(json.dumps(asdict(row)))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0 if all(row.steps_run == row.planned_run for row in rows) else 1


def _measure(width: int, height: int, frames: int, steps: int) -> list[Row]:
    import torch
    from diffusers import UniPCMultistepScheduler, WanTransformer3DModel

    from models.step_cache import CacheKind, StepCaching, StepSkip
    from models.step_cache_hook import time_embedding_changes

    model = random_model(WanTransformer3DModel, WAN_1_3B)
    scheduler: Any = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
    )
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape = (1, 16, 1 + (frames - 1) // 4, height // 8, width // 8)
    noise = torch.randn(shape, device="cuda", dtype=torch.float32, generator=generator)
    text = torch.randn(2, TEXT_TOKENS, TEXT_DIM, device="cuda", dtype=torch.bfloat16, generator=generator)
    scheduler.set_timesteps(steps, device="cuda")
    change = statistics.median(time_embedding_changes(model, scheduler.timesteps)[1:])

    _loop(model, scheduler, noise, text, steps, None)  # warm-up: kernels, workspaces
    rows: list[Row] = []
    plain_s, plain = 0.0, noise
    for name, kind, multiplier in CASES:
        caching = None if kind is None else StepCaching(StepSkip(CacheKind(kind), multiplier), "t2v_1.3B")
        started = time.perf_counter()
        latents, ran = _loop(model, scheduler, noise, text, steps, caching)
        seconds = time.perf_counter() - started
        if caching is None:
            plain_s, plain = seconds, latents
        planned = ran.plan.steps_run if ran.plan is not None else steps
        rows.append(
            Row(
                f"{name} x{multiplier:g}" if kind else name,
                f"{width}x{height}x{frames}",
                steps,
                ran.run,
                ran.skipped,
                planned,
                round(seconds, 3),
                round(plain_s / seconds, 2),
                float((latents - plain).abs().max()),
                round(change, 4),
            )
        )
    return rows


def _loop(model: Any, scheduler: Any, noise: Any, text: Any, steps: int, caching: Any) -> tuple[Any, Any]:
    """WanPipeline's denoising loop at guidance 5, under `caching`: the final latents and the steps run."""
    import torch

    from models.step_cache_hook import step_skipping

    scheduler.set_timesteps(steps, device="cuda")
    scheduler.set_begin_index(0)
    latents = noise.clone()
    pipe = SimpleNamespace(transformer=model, scheduler=scheduler)
    with torch.inference_mode(), step_skipping(pipe, caching, steps) as counter:
        for index, timestep in enumerate(scheduler.timesteps):
            model_input = latents.to(torch.bfloat16)
            t = timestep.expand(1)
            with model.cache_context("cond", step_index=index):
                cond = model(model_input, t, text[:1], return_dict=False)[0]
            with model.cache_context("uncond", step_index=index):
                uncond = model(model_input, t, text[1:], return_dict=False)[0]
            prediction = uncond + 5.0 * (cond - uncond)
            latents = scheduler.step(prediction, timestep, latents, return_dict=False)[0]
        torch.cuda.synchronize()
    return latents, counter.result()


if __name__ == "__main__":
    sys.exit(main())
