"""Step skipping on the tiny Wan at a realistic 30 steps: steps skipped, and the speed-up against a
plain render of the same settings of the whole render and of its denoising (from the call to the
last step: text encoding in, decoding out), per cache type and multiplier (median of 5 renders
each, in rounds, on one hot pipeline). The tiny transformer is a small share of a render (the text
encoder and the VAE weigh as much), so the speed-up is below the steps' ratio; at real size the
transformer dominates (tests/gpu/step_skip.py measures it there). TeaCache reads the time
embedding, whose random weights change about 60% a step here: it skips nothing, as it would not on
such a model in WanGP either, and its figure shows the measurement's noise.

Run: `python -m tests.benchmarks.bench_step_skip`. Prints one JSON line; exits 1 when a MagCache
case runs more steps than WanGP aims at (int(steps / multiplier)) or denoises no faster than plain.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models.progress import Phase, Progress
from models.runner import PipelineHost
from models.settings import parse_settings, resolve
from models.weights import WeightCache

RUNS = 5
STEPS = 30
PLAIN: dict[str, Any] = {
    "model_type": "wan-tiny",
    "prompt": "a fox in the snow",
    "seed": 7,
    "num_inference_steps": STEPS,
    "resolution": "128x128",  # where the transformer is most of a render, as at real size
    "video_length": 17,
}
CASES: dict[str, dict[str, Any]] = {"plain": PLAIN} | {
    f"{kind} x{multiplier:g}": PLAIN | {"skip_steps_cache_type": kind, "skip_steps_multiplier": multiplier}
    for kind, multiplier in (("mag", 1.5), ("mag", 2.0), ("mag", 2.5), ("tea", 2.0))
}


def main() -> int:
    seconds: dict[str, list[float]] = {name: [] for name in CASES}
    denoise: dict[str, list[float]] = {name: [] for name in CASES}
    steps: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-skip-") as work:
        host = PipelineHost(WeightCache(Path(work)))
        _render(host, PLAIN, Path(work))  # loads the pipeline: every timed render runs hot
        for _ in range(RUNS):  # rounds over the cases, so a slow spell of the machine hits them all
            for name, settings in CASES.items():
                took, loop, steps[name] = _render(host, settings, Path(work))
                seconds[name].append(took)
                denoise[name].append(loop)
    medians = {name: statistics.median(runs) for name, runs in seconds.items()}
    loops = {name: statistics.median(runs) for name, runs in denoise.items()}
    cases = {
        name: {
            "steps_run": steps[name][0],
            "steps_skipped": steps[name][1],
            "median_s": round(medians[name], 3),
            "speedup": round(medians["plain"] / medians[name], 2),
            "denoise_s": round(loops[name], 3),
            "denoise_speedup": round(loops["plain"] / loops[name], 2),
        }
        for name in CASES
    }
    # The target: MagCache runs the steps WanGP aims at (int(steps / multiplier)) and is faster.
    missed = [
        name
        for name, case in cases.items()
        if name.startswith("mag")
        and (case["steps_run"] > int(STEPS / float(name.split("x")[1])) or case["denoise_speedup"] <= 1.0)
    ]
    print(json.dumps({"steps": STEPS, "cases": cases, "runs": RUNS, "missed": missed}))
    return 1 if missed else 0


def _render(
    host: PipelineHost, settings: dict[str, Any], folder: Path
) -> tuple[float, float, tuple[int, int]]:
    """Seconds of the render, seconds of its denoising (from the call to the last step, text
    encoding included, decoding not), and the steps run and skipped."""
    job = resolve(parse_settings(settings), folder)
    marks: dict[Phase, float] = {}

    def mark(progress: Progress) -> None:
        marks.setdefault(progress.phase, time.perf_counter())

    started = time.perf_counter()
    info = host.generate(job.preset, job.generations[0].request, on_progress=mark).info
    ended = time.perf_counter()
    loop = marks[Phase.DECODING] - marks[Phase.DENOISING]
    return ended - started, loop, (info.steps_run, info.steps_skipped)


if __name__ == "__main__":
    sys.exit(main())
