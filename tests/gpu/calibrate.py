"""GPU calibration of the estimates the scheduler starts from, on real architectures with random weights.

No hub is reachable, so the Wan 2.1 transformers (1.3B and 14B) and the Wan VAE are built from their
published configs (the catalogue's parameter counts match them exactly) with random weights, in
bf16 as profile 1 runs them. For each size it measures, on the GPU at hand:

- the transformer's activation peak of one denoising forward (peak allocated minus the weights),
  against models.memory.working_bytes (tokens x (HIDDEN_BYTES x width + FFN_BYTES x MLP width));
- the seconds of one forward, as achieved TFLOPS against scheduler.cost.render_flops (per step) and
  the card's dense half-precision peak, against scheduler.cost.UTILISATION;
- the VAE decoder's peak over its weights for the whole clip, in bf16 (the runner loads every
  component in the card's half type) and fp32, whole frames and tiled (`vae.enable_tiling()`, as the
  runner does on CUDA), against VAE_BYTES_PER_PIXEL x W x H.

Run on a CUDA machine: `python tests/gpu/calibrate.py [--json FILE] [--quick] [--vae-only]`. Exit 3
without CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

# (model id, transformer config, sizes as (width, height, frames))
TRANSFORMERS: tuple[tuple[str, dict[str, int], tuple[tuple[int, int, int], ...]], ...] = (
    (
        "wan2.1-t2v-1.3b",
        {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30},
        ((832, 480, 33), (832, 480, 81), (1280, 720, 81)),
    ),
    ("wan2.1-t2v-14b", {}, ((832, 480, 81), (1280, 720, 81))),  # diffusers' defaults are the 14B
)
TEXT_TOKENS, TEXT_DIM = 512, 4096
GIB = 1024**3


@dataclass
class TransformerRow:
    model: str
    size: str
    tokens: int
    weights_gib: float
    activations_gib: float
    estimate_gib: float
    ratio: float  # measured / estimate
    step_s: float
    achieved_tflops: float
    utilisation: float  # of the card's dense half-precision peak


@dataclass
class VaeRow:
    size: str
    dtype: str
    tiled: bool
    weights_gib: float
    peak_over_weights_gib: float
    estimate_gib: float
    ratio: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="the 1.3B at one size only")
    parser.add_argument("--vae-only", action="store_true", help="skip the transformers")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to calibrate", file=sys.stderr)
        return 3
    from models.device import detect_gpus

    gpu = detect_gpus()[0]
    peak = gpu.spec.half_tflops if gpu.spec is not None else float("nan")
    print(f"torch {torch.__version__}, {gpu.name}, peak {peak} dense half TFLOPS (GPU table)")
    rows: list[dict[str, Any]] = []
    cases = () if args.vae_only else TRANSFORMERS[:1] if args.quick else TRANSFORMERS
    for model_id, config, sizes in cases:
        for row in _transformer_rows(model_id, config, sizes[:1] if args.quick else sizes, peak):
            print(row)
            rows.append({"kind": "transformer", **asdict(row)})
    for size in ((832, 480, 81),) if args.quick else ((832, 480, 81), (1280, 720, 81)):
        for dtype in ("bf16", "fp32"):
            for tiled in (False, True):
                vae_row = _vae_row(size, dtype, tiled)
                print(vae_row)
                rows.append({"kind": "vae", **asdict(vae_row)})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _transformer_rows(
    model_id: str, config: dict[str, int], sizes: tuple[tuple[int, int, int], ...], peak_tflops: float
) -> list[TransformerRow]:
    import torch
    from diffusers import WanTransformer3DModel

    from models.catalogue import get_model
    from models.memory import latent_tokens, working_bytes
    from models.work import WorkSize
    from scheduler.cost import render_flops
    from tests.gpu.random_weights import random_model

    preset = get_model(model_id)
    model = random_model(WanTransformer3DModel, config)
    weights = torch.cuda.memory_allocated()
    rows = []
    for width, height, frames in sizes:
        work = WorkSize(model_id, width, height, frames, steps=1)  # one forward
        size = work.size
        lat = preset.latent
        latents = torch.randn(
            1, lat.channels, 1 + (frames - 1) // lat.temporal, height // lat.spatial, width // lat.spatial,
            device="cuda", dtype=torch.bfloat16,
        )  # fmt: skip
        text = torch.randn(1, TEXT_TOKENS, TEXT_DIM, device="cuda", dtype=torch.bfloat16)
        timestep = torch.tensor([500], device="cuda")
        with torch.inference_mode():
            model(latents, timestep, text, return_dict=False)  # warm-up: kernels, workspaces
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            started = time.perf_counter()
            model(latents, timestep, text, return_dict=False)
            torch.cuda.synchronize()
            step_s = time.perf_counter() - started
        activations = torch.cuda.max_memory_allocated() - base
        estimate = working_bytes(preset, size)
        tflops = render_flops(preset, work) / step_s / 1e12
        rows.append(
            TransformerRow(
                model_id, f"{width}x{height}x{frames}", latent_tokens(preset, size),
                round(weights / GIB, 2), round(activations / GIB, 3), round(estimate / GIB, 3),
                round(activations / estimate, 2), round(step_s, 3), round(tflops, 1),
                round(tflops / peak_tflops, 3),
            )
        )  # fmt: skip
        del latents, text
    del model
    torch.cuda.empty_cache()
    return rows


def _vae_row(size: tuple[int, int, int], dtype: str, tiled: bool) -> VaeRow:
    import torch
    from diffusers import AutoencoderKLWan

    from models.memory import VAE_BYTES_PER_PIXEL
    from tests.gpu.random_weights import random_model

    width, height, frames = size
    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    vae = random_model(AutoencoderKLWan, {}, dtype=torch_dtype)
    if tiled:
        vae.enable_tiling()
    weights = torch.cuda.memory_allocated()
    latents = torch.randn(
        1, 16, 1 + (frames - 1) // 4, height // 8, width // 8, device="cuda", dtype=torch_dtype
    )
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        vae.decode(latents, return_dict=False)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - weights
    estimate = VAE_BYTES_PER_PIXEL * width * height
    del vae, latents
    torch.cuda.empty_cache()
    return VaeRow(
        f"{width}x{height}x{frames}", dtype, tiled, round(weights / GIB, 3), round(peak / GIB, 3),
        round(estimate / GIB, 3), round(peak / estimate, 2),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
