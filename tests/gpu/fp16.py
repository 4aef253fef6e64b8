"""fp16 where a card lacks bf16 (below sm80), exercised on whatever card is here: the Wan 2.1 1.3B
transformer (published config, random weights) runs one denoising forward in fp32, bf16 and fp16
from the same weights, and each half precision's error against fp32 is measured. Pass: fp16's output
is finite and no further from fp32 than bf16's is, times 1.5 (fp16 keeps 10 mantissa bits to bf16's
7, so it is closer unless it overflows). Then, on CUDA, each tiny family renders through the
pipeline host as a Turing card (sm75: fp16, the kernels sm75 allows) would, beside the card's own
path, and both outputs are compared. One JSON line per check; exit 1 on a failure.

Runs on CPU too (the transformer part), and with `--layers 1 --size 64x64x1` in seconds.
    python tests/gpu/fp16.py [--layers 30] [--size 832x480x33]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

from tests.gpu.random_weights import WAN_1_3B, random_model

TEXT_TOKENS, TEXT_DIM = 512, 4096  # umT5's tokens and width, as the 1.3B reads them
SLACK = 1.5  # fp16's error may be this much above bf16's and still pass
TINY = ("wan-tiny", "ltx-tiny", "flux-tiny", "qwen-image-tiny")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=WAN_1_3B["num_layers"])
    parser.add_argument("--size", default="832x480x33", help="WIDTHxHEIGHTxFRAMES of the video")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its advice on casting a model: this check casts on purpose
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ok = _transformer(device, args.layers, args.size)
    if device == "cuda":
        ok = all([_tiny_family(model_id) for model_id in TINY]) and ok
    return 0 if ok else 1


def _transformer(device: str, layers: int, size: str) -> bool:
    import torch
    from diffusers import WanTransformer3DModel

    width, height, frames = (int(side) for side in size.split("x"))
    generator = torch.Generator(device=device).manual_seed(0)  # the weights', then the inputs'
    config = WAN_1_3B | {"num_layers": layers}
    model = random_model(WanTransformer3DModel, config, device, torch.float32, generator)
    shape = (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)  # Wan's VAE: 4x in time, 8x in space
    latents = torch.randn(shape, device=device, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, TEXT_DIM, device=device, generator=generator)
    timestep = torch.tensor([500], device=device)

    def forward(dtype: torch.dtype) -> torch.Tensor:
        with torch.inference_mode():
            out = model.to(dtype)(latents.to(dtype), timestep, text.to(dtype), return_dict=False)[0]
        return out.float()

    reference = forward(torch.float32)
    errors: dict[str, float] = {}
    finite: dict[str, bool] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        out = forward(dtype)
        finite[name] = bool(torch.isfinite(out).all())
        errors[name] = float((out - reference).norm() / reference.norm())
    ok = finite["fp16"] and errors["fp16"] <= SLACK * errors["bf16"]
    print(json.dumps({
        "check": "fp16_transformer", "device": device, "layers": layers, "latents": list(shape),
        "relative_error_vs_fp32": {name: round(error, 5) for name, error in errors.items()},
        "finite": finite, "ok": ok,
    }))  # fmt: skip
    return ok


def _tiny_family(model_id: str) -> bool:
    """A tiny model through the pipeline host as this card renders it and as a Turing card would."""
    import numpy as np

    from models import attention
    from models.attention import AttentionMode
    from models.catalogue import get_model
    from models.request import GenerationRequest
    from models.runner import PipelineHost
    from models.weights import WeightCache

    preset = get_model(model_id)
    width, height = (int(side) for side in preset.defaults.resolution.split("x"))
    request = GenerationRequest(
        prompt="fp16 check", negative_prompt="", width=width, height=height,
        frames=preset.defaults.video_length if preset.frames else 1,
        steps=preset.defaults.num_inference_steps, guidance_scale=preset.defaults.guidance_scale,
        flow_shift=preset.defaults.flow_shift, sample_solver=preset.defaults.sample_solver, seed=0,
    )  # fmt: skip
    cache = WeightCache(Path(tempfile.mkdtemp(prefix="wanfarm-fp16-")))
    outputs: dict[str, Any] = {}
    for name in ("own", "sm75"):
        host = PipelineHost(cache)
        if name == "sm75":
            assert host.gpu is not None
            host.gpu = replace(host.gpu, capability=(7, 5))  # no bf16: the fp16 path a 2080 Ti takes
            host.attention_mode = attention.choose(AttentionMode.AUTO, host.gpu.caps)
        out = host.generate(preset, request)
        outputs[name] = (out.frames.astype(np.float32), out.info.dtype)
        host.unload()
    (own, own_dtype), (turing, turing_dtype) = outputs["own"], outputs["sm75"]
    mean_diff = float(np.abs(own - turing).mean())
    ok = turing_dtype == "float16" and float(turing.std()) > 0.0  # NaN latents decode to flat frames
    print(json.dumps({
        "check": "fp16_tiny", "model": model_id, "dtypes": [own_dtype, turing_dtype],
        "frames_mean_abs_diff": round(mean_diff, 3), "frames_std_fp16": round(float(turing.std()), 3),
        "ok": ok,
    }))  # fmt: skip
    return ok


if __name__ == "__main__":
    sys.exit(main())
