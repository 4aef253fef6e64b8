"""A denoising step through the farm's runner against plain diffusers, on the same pipeline: Wan 2.1
1.3B's transformer (published config, random weights) in a WanPipeline with a text encoder of the
width it reads (one layer) and the tiny VAE. Plain: the pipeline called as diffusers documents it.
Farm: the same pipeline in the pipeline host's hot slot, rendered by `PipelineHost.generate` with
its progress, checkpoint, step-skipping and kernel-counting hooks, at sdpa on both sides (sage's
speed-up is tests/gpu/sage.py's). Each side's step is the median gap between its step ends.
Target: the farm's step within 5% of plain. One JSON line; exit 1 over the target.

    python tests/gpu/step_speed.py [--layers 30] [--size 832x480x33] [--steps 8] [--target 0.05]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

from tests.gpu.random_weights import WAN_1_3B, random_model

MODEL = "wan2.1-t2v-1.3b"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=WAN_1_3B["num_layers"])
    parser.add_argument("--size", default="832x480x33", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.05, help="the farm's step over plain's, less 1")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging

    from models.attention import AttentionMode
    from models.catalogue import get_model
    from models.progress import Phase, Progress
    from models.request import GenerationRequest
    from models.runner import PipelineHost, _Hot
    from models.weights import WeightCache

    diffusers_logging.set_verbosity_error()
    width, height, frames = (int(side) for side in args.size.split("x"))
    host = PipelineHost(
        WeightCache(Path(tempfile.mkdtemp(prefix="wanfarm-steps-"))), attention_mode=AttentionMode.SDPA
    )
    pipe = _pipeline(args.layers, host.device, host.dtype)
    preset = get_model(MODEL)

    plain: list[float] = []

    def step_end(pipeline: Any, step: int, timestep: Any, outputs: dict[str, Any]) -> dict[str, Any]:
        _synchronize(host.device)
        plain.append(time.perf_counter())
        return outputs

    with torch.inference_mode():
        pipe(
            prompt="a step", negative_prompt="", height=height, width=width, num_frames=frames,
            num_inference_steps=args.steps, guidance_scale=5.0, output_type="latent",
            callback_on_step_end=step_end,
        )  # fmt: skip

    farm: list[float] = []

    def progress(update: Progress) -> None:
        if update.phase is Phase.DENOISING and update.step > 0:
            _synchronize(host.device)
            farm.append(time.perf_counter())

    # The hot slot takes the pipeline built here as if loaded: what is measured is the render path.
    host._hot = _Hot(preset.id, None if host.gpu is None else _profile(), pipe, offload=None)
    request = GenerationRequest(
        prompt="a step", negative_prompt="", width=width, height=height, frames=frames, steps=args.steps,
        guidance_scale=5.0, flow_shift=3.0, sample_solver="unipc", seed=0,
    )  # fmt: skip
    host.generate(preset, request, _profile(), on_progress=progress)
    plain_s, farm_s = _median_gap(plain), _median_gap(farm)
    overhead = farm_s / plain_s - 1
    ok = overhead <= args.target
    print(json.dumps({
        "check": "step_speed", "device": host.device, "dtype": str(host.dtype).removeprefix("torch."),
        "layers": args.layers, "size": args.size, "steps": args.steps, "plain_step_s": round(plain_s, 4),
        "farm_step_s": round(farm_s, 4), "overhead": round(overhead, 4),
        "target": args.target if math.isfinite(args.target) else None, "ok": ok,
    }))  # fmt: skip
    return 0 if ok else 1


def _pipeline(layers: int, device: str, dtype: Any) -> Any:
    from diffusers import WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from models.tiny import t5_config, t5_tokenizer, wan_scheduler, wan_vae

    tokenizer = t5_tokenizer()
    wide = t5_config(len(tokenizer)) | {
        "d_model": 4096,
        "d_kv": 64,
        "num_heads": 64,
        "d_ff": 256,
        "num_layers": 1,
    }
    transformer = random_model(WanTransformer3DModel, WAN_1_3B | {"num_layers": layers}, device, dtype)
    text_encoder = UMT5EncoderModel(UMT5Config(**wide)).eval()
    pipe: Any = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=wan_vae(),
        scheduler=wan_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def _profile() -> Any:
    from models.profiles import Profile

    return Profile.P1  # everything on the GPU, as the plain side has it


def _median_gap(times: list[float]) -> float:
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return statistics.median(gaps)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
