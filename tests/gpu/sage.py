"""SageAttention through the farm's own backend on CUDA, and the other kernels beside sdpa that are
installed (xFormers, flash-attn, through diffusers' backends), at the attention shape of Wan 2.1
1.3B at 480p (81 frames: 21 x 30 x 52 = 32,760 tokens, 12 heads of 128): the kernel counter, the
largest difference from sdpa, and the time of a call of each against sdpa's. One JSON line per
mode; exit 0 when every installed mode ran and matched, 1 when one did not, 3 without CUDA or
without any kernel beside sdpa.

    python tests/gpu/sage.py [--tokens N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

# SageAttention quantizes q and k to int8: its outputs differ from sdpa's by ~1e-2. The exact
# kernels differ by bf16's rounding of a different order of sums.
TOLERANCE = {"sage": 0.05, "sage2": 0.05, "flash": 0.02, "xformers": 0.02}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=21 * 30 * 52)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    import torch
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    from models import attention, sage_attention, xformers_attention
    from models.attention import AttentionMode

    if not torch.cuda.is_available():
        print(json.dumps({"check": "sage", "skipped": "no CUDA device"}))
        return 3
    kernels = (AttentionMode.SAGE, AttentionMode.SAGE2, AttentionMode.FLASH, AttentionMode.XFORMERS)
    modes = [m for m in kernels if m in attention.installed_modes()]
    if not modes:
        print(json.dumps({"check": "sage", "skipped": "no attention kernel beside sdpa imports"}))
        return 3
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, args.tokens, 12, 128, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(3)
    )

    def timed(mode: AttentionMode) -> tuple[torch.Tensor, float, dict[str, int]]:
        name = AttentionBackendName(attention.BACKENDS[mode])
        dispatch_attention_fn(q, k, v, backend=name)  # warm-up: Triton compiles on the first call
        torch.cuda.synchronize()
        with attention.record_backends() as calls:
            started = time.perf_counter()
            for _ in range(args.repeat):
                out = dispatch_attention_fn(q, k, v, backend=name)
            torch.cuda.synchronize()
        return out, (time.perf_counter() - started) / args.repeat, {str(m): n for m, n in calls.items()}

    want, sdpa_s, _ = timed(AttentionMode.SDPA)
    failed = False
    for mode in modes:
        if mode in (AttentionMode.SAGE, AttentionMode.SAGE2):
            sage_attention.register(mode.value)
        if mode is AttentionMode.XFORMERS:
            xformers_attention.register()  # as the runner points a model at it
        got, seconds, calls = timed(mode)
        diff = float((got.float() - want.float()).abs().max())
        ok = calls == {mode.value: args.repeat} and diff <= TOLERANCE[mode.value]
        failed |= not ok
        print(json.dumps({
            "check": "sage", "mode": mode.value, "ok": ok, "calls": calls, "max_abs_diff": round(diff, 4),
            "seconds": round(seconds, 5), "sdpa_seconds": round(sdpa_s, 5),
            "speedup": round(sdpa_s / seconds, 2), "shape": [1, args.tokens, 12, 128],
            "gpu": torch.cuda.get_device_name(0),
        }))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
