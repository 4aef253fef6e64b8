"""The call of a HunyuanVideo 1.5 pipeline in the farm's common spelling.

diffusers' HunyuanVideo15Pipeline and HunyuanVideo15ImageToVideoPipeline differ from the other
families' pipelines in three ways the runner cannot see: the guidance scale is their guider's
(ClassifierFreeGuidance), not a call argument; they take no step callback, which the farm's
progress, cancel and LoRA schedules ride on; and from a start image they pick the output size
themselves (a bucket of the transformer's target_size), where WanGP renders the size the job asks.
`Hunyuan15Call` takes the common arguments and runs a pipeline object built over the hot one's
modules with its own guider and scheduler, so the hot pipeline is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The pipelines' own arguments that the common call carries too, passed through as they are.
_PASSED = (
    "prompt",
    "negative_prompt",
    "num_frames",
    "num_inference_steps",
    "num_videos_per_prompt",
    "generator",
    "output_type",
)

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class Hunyuan15Call:
    """Callable like the other families' pipelines: the common keyword arguments (guidance_scale,
    height, width, image, callback_on_step_end) in, the pipeline's output out."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __getattr__(self, name: str) -> Any:
        # The transformer, scheduler and config, for step skipping and the expert switch.
        if name == "pipe":  # not set yet (a copy being built): no pipeline to ask
            raise AttributeError(name)
        return getattr(self.pipe, name)

    def __call__(
        self,
        *,
        guidance_scale: float,
        height: int,
        width: int,
        image: Any = None,
        callback_on_step_end: StepCallback | None = None,
        **kwargs: Any,
    ) -> Any:
        unknown = sorted(set(kwargs) - set(_PASSED))
        if unknown:
            raise ValueError(f"{type(self.pipe).__name__} takes no {', '.join(unknown)}")
        built = _built(self.pipe, guidance_scale, callback_on_step_end)
        if image is None:
            return built(height=height, width=width, **kwargs)
        # The start image at the job's size (cropped to its aspect, as the pipeline does), and the
        # pipeline's size bucket replaced by that size.
        built.video_processor.calculate_default_height_width = lambda **_: (height, width)
        return built(image=image, **kwargs)


def _built(pipe: Any, guidance_scale: float, callback: StepCallback | None) -> Any:
    """A pipeline of `pipe`'s class over its modules, with a guider at `guidance_scale` and a
    scheduler (a copy of the hot one's, already set up for the job) that calls `callback` after
    each step."""
    guider = type(pipe.guider).from_config(pipe.guider.config, guidance_scale=guidance_scale)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if callback is not None:
        _call_back_after_steps(scheduler, pipe, callback)
    built = type(pipe)(**(pipe.components | {"guider": guider, "scheduler": scheduler}))
    built.set_progress_bar_config(disable=True)
    if hasattr(pipe, "hf_device_map"):  # mmgp's mark that the modules' devices are its own
        built.hf_device_map = pipe.hf_device_map
    return built


def _call_back_after_steps(scheduler: Any, pipe: Any, callback: StepCallback) -> None:
    # The pipelines step the scheduler once per denoising step: the callback follows each step,
    # with the step's index, as diffusers' callback_on_step_end would.
    step = scheduler.step
    done = [0]

    def step_then_call_back(model_output: Any, timestep: Any, sample: Any, **kwargs: Any) -> Any:
        result = step(model_output, timestep, sample, **kwargs)
        latents = result[0] if isinstance(result, tuple) else result.prev_sample
        callback(pipe, done[0], timestep, {"latents": latents})
        done[0] += 1
        return result

    scheduler.step = step_then_call_back
