"""Running an LTX-2 stage plan (models.ltx2_stages) on a loaded LTX2Pipeline: one call, or two
calls of the same pipeline around its latent upsampler, as one render.

Both calls take their sigmas from the plan through an Euler scheduler that leaves them as given
(no resolution shift, no terminal stretch): WanGP's schedules are already shifted. The first call
returns its latents (video, and the soundtrack's); the video latents are upsampled x2; the second
call re-noises both to its first sigma and refines them without CFG, then decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.ltx2_guidance import wangp_skip_attention
from models.ltx2_stages import UPSAMPLER, StagePlan, first_stage_size

# WanGP's refining pass reads the prompt alone: no CFG, no other guidance pass.
UNGUIDED: dict[str, Any] = {
    "guidance_scale": 1.0,
    "audio_guidance_scale": 1.0,
    "stg_scale": 0.0,
    "spatio_temporal_guidance_blocks": None,
    "modality_scale": 1.0,
    "guidance_rescale": 0.0,
}

# Called with the stage (1 or 2) before it runs: the runner sets the stage's LoRA weight there.
StageHook = Callable[[int], None]


@dataclass
class StageRecord:
    """What each stage ran on, for tests and the run's record: the latent shapes it denoised."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)


class StagesCall:
    """A callable with the pipeline's own call signature that renders the plan in two calls."""

    def __init__(
        self, pipe: Any, plan: StagePlan, upsampler: Any = None, before_stage: StageHook | None = None
    ) -> None:
        self.pipe = pipe
        self.plan = plan
        self.upsampler = upsampler
        self.before_stage = before_stage or (lambda _stage: None)
        self.record = StageRecord()

    def __getattr__(self, name: str) -> Any:
        # The runner reads the pipeline's parts through its call (the vocoder's rate, the tokenizer).
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> Any:
        callback = kwargs.pop("callback_on_step_end", None)
        first, second = self.plan.steps
        width, height = first_stage_size(int(kwargs["width"]), int(kwargs["height"]))
        native = self.pipe.scheduler
        self.pipe.scheduler = _as_given(native)
        try:
            if not self.plan.two:
                self.before_stage(1)
                sigmas = list(self.plan.first_sigmas)
                one = {"num_inference_steps": first, "sigmas": sigmas, "callback_on_step_end": callback}
                with wangp_skip_attention(self.pipe.transformer):
                    return self.pipe(**kwargs | one)
            self.before_stage(1)
            with wangp_skip_attention(self.pipe.transformer):
                low = self._first_stage(kwargs, width, height, callback)
            self.record.shapes.append(tuple(low.frames.shape))
            upsampled = self._upsample(low.frames)
            self.record.shapes.append(tuple(upsampled.shape))
            self.before_stage(2)
            return self.pipe(
                **kwargs
                | UNGUIDED
                | {
                    "latents": upsampled,
                    "audio_latents": low.audio,
                    "noise_scale": self.plan.second_sigmas[0],
                    "num_inference_steps": second,
                    "sigmas": list(self.plan.second_sigmas),
                    "callback_on_step_end": _last_step(callback, first),
                }
            )
        finally:
            self.pipe.scheduler = native

    def _first_stage(self, kwargs: dict[str, Any], width: int, height: int, callback: Any) -> Any:
        # Half the canvas; its latents (video and soundtrack) come back undecoded.
        half = {
            "width": width,
            "height": height,
            "num_inference_steps": self.plan.steps[0],
            "sigmas": list(self.plan.first_sigmas),
            "output_type": "latent",
            "callback_on_step_end": callback,
        }
        return self.pipe(**kwargs | half)

    def _upsample(self, latents: Any) -> Any:
        # The upsampler reads the VAE's raw latents, which the first call returns.
        weights = next(self.upsampler.parameters())
        with torch.no_grad():
            up = self.upsampler(latents.to(device=weights.device, dtype=weights.dtype))
        return up.to(device=latents.device, dtype=torch.float32)


def load_upsampler(folder: Path, device: str, dtype: torch.dtype) -> Any:
    """The latent upsampler saved beside the pipeline's components (its `latent_upsampler` folder);
    FileNotFoundError naming the folder when the model has none."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    path = folder / UPSAMPLER
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{folder.name}: no {UPSAMPLER} folder, which two-stage LTX-2 renders need")
    model = LTX2LatentUpsamplerModel.from_pretrained(path, torch_dtype=dtype)
    return model.to(device).eval()


def _as_given(scheduler: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(
        scheduler.config, shift=1.0, use_dynamic_shifting=False, shift_terminal=None
    )


def _last_step(callback: Any, steps: int) -> Any:
    # The refining steps report as the first stage's last (the job's step count is the first
    # stage's); the callback may still cancel between them.
    if callback is None:
        return None

    def call(pipe: Any, _step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = callback(pipe, steps - 1, timestep, tensors)
        return result

    return call
