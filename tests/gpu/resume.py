"""A checkpoint resume at real size on the GPU: diffusers' WanPipeline around a Wan 2.1 1.3B
transformer (its published shape, random weights, in the card's half type) with the tiny text
encoder and VAE (their widths only feed the transformer's text projection and its 16 latent
channels), 20 steps of UniPC (whose model-output history a checkpoint must carry) with classifier-free
guidance, at 832x480x33.

It renders once unbroken, once stopped after step 12 with a checkpoint saved at each boundary
(models.checkpoint, as an agent saves them, read back from their bytes), then resumes from the last
one in a fresh pipeline call: it prints the checkpoint's size and save time, the replay's time
against the unbroken run's, and whether the decoded frames are identical.

Run on a CUDA machine: `python tests/gpu/resume.py [--json FILE] [--size 832x480x33] [--steps 20]`.
Exit 3 without CUDA, 1 when the resumed frames differ from the unbroken ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

WAN_1_3B = {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30}


class Stop(Exception):
    """The agent died after the checkpoint."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--size", default="832x480x33")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stop-after", type=int, default=12)
    parser.add_argument("--cpu", action="store_true", help="check the script itself on the CPU (fp32)")
    parser.add_argument("--layers", type=int, default=30, help="transformer blocks (the 1.3B has 30)")
    args = parser.parse_args()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 3
    width, height, frames = (int(v) for v in args.size.split("x"))
    if args.cpu:
        pipe = _pipeline("cpu", torch.float32, args.layers)
    else:
        half = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16
        pipe = _pipeline("cuda", half, args.layers)
    call = {
        "prompt": "a red fox runs through deep snow",
        "negative_prompt": "blurry",
        "width": width,
        "height": height,
        "num_frames": frames,
        "num_inference_steps": args.steps,
        "guidance_scale": 5.0,
        "output_type": "np",
    }
    started = time.monotonic()
    whole = _run(pipe, call, None, None)
    whole_s = time.monotonic() - started
    saved: list[Any] = []
    with contextlib.suppress(Stop):
        _run(pipe, call, saved, args.stop_after)
    last = saved[-1]
    started = time.monotonic()
    resumed = _run(pipe, call, [last], None, resume=True)
    resumed_s = time.monotonic() - started
    same = bool((whole == resumed).all())
    row = {
        "size": args.size,
        "steps": args.steps,
        "resumed_from": last.step,
        "checkpoint_bytes": len(last.encode()),
        "save_seconds": round(_save_seconds(last), 4),
        "unbroken_seconds": round(whole_s, 2),
        "resumed_seconds": round(resumed_s, 2),
        "identical_frames": same,
        "max_abs_diff": float(abs(whole.astype("float64") - resumed.astype("float64")).max()),
    }
    print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0 if same else 1


def _pipeline(device: str, dtype: Any, layers: int) -> Any:
    from diffusers import WanPipeline, WanTransformer3DModel

    from models.tiny import WAN_SHAPE, wan_scheduler, wan_text, wan_vae

    tokenizer, text_encoder = wan_text()
    transformer = WanTransformer3DModel(**(WAN_SHAPE | WAN_1_3B | {"num_layers": layers}))  # random weights
    pipe: Any = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=wan_vae(),
        scheduler=wan_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def _run(
    pipe: Any, call: dict[str, Any], saved: list[Any] | None, stop_after: int | None, resume: bool = False
) -> Any:
    import torch

    from models.checkpoint import StepRecorder, StepState, recording

    generator = torch.Generator(device="cpu").manual_seed(5)
    recorder = StepRecorder("resume-check", generator, saved[-1] if resume and saved else None)

    def on_step_end(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        recorder.step_ended()
        if saved is not None and not resume and not recorder.replaying:
            started = time.monotonic()
            state = StepState.decode(recorder.capture(call["num_inference_steps"]).encode())
            _SAVE_SECONDS[id(state)] = time.monotonic() - started
            saved.append(state)
        if stop_after is not None and step + 1 == stop_after:
            raise Stop
        return tensors

    with torch.inference_mode(), recording(pipe, recorder):
        out = pipe(**call, generator=generator, callback_on_step_end=on_step_end)
    return (out.frames[0] * 255).round().astype("uint8")


_SAVE_SECONDS: dict[int, float] = {}


def _save_seconds(state: Any) -> float:
    return _SAVE_SECONDS.get(id(state), 0.0)


if __name__ == "__main__":
    sys.exit(main())
