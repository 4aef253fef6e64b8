"""Networks built on Wan with pipelines of their own: SkyReels V2 diffusion forcing, ChronoEdit and
Lucy Edit. What each needs beyond Wan's call (models.call_args) and single-file layout
(models.single_file), read from WanGP at deepbeepmeep/Wan2GP@8681e9f7 (models/wan/df_handler.py,
diffusion_forcing.py, wan_handler.py, any2video.py) and diffusers 0.42's pipelines.

- SkyReels DF (`SkyReelsV2DiffusionForcingPipeline`): WanGP's DTT2V renders one window
  synchronously (model_mode 0: ar_step 0, no causal blocks) and feeds its transformer's fps
  embedding 0 at 16 fps, 1 otherwise; the pipeline's own default is 24 fps whatever the model.
  Its original layout names the fps projection `fps_projection.0/.2`, which diffusers' Wan converter
  leaves as they are.
- ChronoEdit (`ChronoEditPipeline`): WanGP's default (model_mode 0, image_mode 1) renders the edit
  as 5 frames from the start image and returns the last one as an image.
- Lucy Edit (`LucyEditPipeline`): the video to edit is WanGP's control video (`video_guide`, its
  video_prompt_type "UV"), read frame by frame from the file, its first `video_length` frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.preset import ModelPreset
from models.request import GenerationRequest

SKYREELS_DF = "SkyReelsV2DiffusionForcingPipeline"
CHRONO_EDIT = "ChronoEditPipeline"
LUCY_EDIT = "LucyEditPipeline"
# WanGP's shortest SkyReels DF video (its causal blocks of 5 latent frames; lengths 17+20k).
SKYREELS_MIN_FRAMES = 17
# WanGP's ChronoEdit in its default mode (model_mode 0): a 5-frame edit, the last frame kept.
CHRONO_EDIT_FRAMES = 5

# SkyReels' original names of the fps projection (an nn.Sequential) and diffusers' (a FeedForward).
_FPS_PROJECTION = {
    "fps_projection.0.": "fps_projection.net.0.proj.",
    "fps_projection.2.": "fps_projection.net.2.",
}


def skyreels_layout(state: dict[str, Any]) -> dict[str, Any]:
    """SkyReels V2's original key layout in diffusers' names: Wan's, plus the fps projection."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    renamed = {}
    for key, value in state.items():
        for original, diffusers_name in _FPS_PROJECTION.items():
            key = key.replace(original, diffusers_name)
        renamed[key] = value
    return dict(convert_wan_transformer_to_diffusers(renamed))


class GuideRefused(ValueError):
    """A control video a Wan offshoot cannot render from, with the reason."""


def call_extras(preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """The arguments of `preset`'s pipeline beyond Wan's call: SkyReels DF's window and frame
    rate, Lucy Edit's video; {} for any other pipeline."""
    if preset.pipeline == SKYREELS_DF:
        if preset.fps is None:
            raise ValueError(f"{preset.id}: {SKYREELS_DF} needs the model's frame rate")
        # One window (base_num_frames covers the video, no overlap), synchronous steps.
        return {"fps": preset.fps, "base_num_frames": request.frames, "ar_step": 0, "overlap_history": None}
    if preset.pipeline == LUCY_EDIT:
        if request.video_guide is None:
            raise GuideRefused(f"{preset.id} edits a video: give it as video_guide")
        return {"video": read_frames(request.video_guide, request.frames, (request.width, request.height))}
    return {}


def rendered_frames(preset: ModelPreset, frames: int) -> int:
    """The frames WanGP renders for a `video_length` of `frames` (already on the 4k+1 grid):
    SkyReels DF's DTT2V rounds it to the nearest 17+20k (81 renders 77), as Python rounds halves."""
    if preset.pipeline != SKYREELS_DF:
        return frames
    return round((max(frames, SKYREELS_MIN_FRAMES) - SKYREELS_MIN_FRAMES) / 20) * 20 + SKYREELS_MIN_FRAMES


def settings_problems(preset: ModelPreset, given: Mapping[str, object]) -> list[str]:
    """A problem line per setting of `given` these models cannot render as WanGP does: Lucy Edit
    without the video it edits; SkyReels DF with a sampler other than UniPC (WanGP's DTT2V samples
    with UniPC whatever sample_solver says). Checked with the settings, before any job starts."""
    if preset.pipeline == LUCY_EDIT and not given.get("video_guide"):
        return [f"video_guide: {preset.id} edits a video: give it as video_guide"]
    solver = given.get("sample_solver")
    if preset.pipeline == SKYREELS_DF and solver not in (None, "", "default", "unipc"):
        return [
            f"sample_solver: {solver!r} is not what WanGP renders for {preset.id}: its diffusion forcing "
            "always samples with UniPC; use 'unipc' or leave it out"
        ]
    return []


def read_frames(path: Path, count: int, size: tuple[int, int]) -> list[Any]:
    """The first `count` frames of the video at `path`, as RGB images of `size` (width, height);
    GuideRefused when it is not a readable video or is shorter."""
    import av
    from PIL import Image

    frames: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_image().convert("RGB").resize(size, Image.Resampling.LANCZOS))
                if len(frames) == count:
                    break
    except (av.error.FFmpegError, IndexError) as error:  # IndexError: a file without a video stream
        raise GuideRefused(f"video_guide: {path.name} is not a readable video: {error}") from None
    if len(frames) < count:
        raise GuideRefused(f"video_guide: {path.name} has {len(frames)} frames; this job renders {count}")
    return frames


@dataclass(frozen=True)
class ImageResult:
    """A pipeline result in the shape of an image pipeline's: `images` (N, H, W, 3)."""

    images: Any


class ChronoEditImageCall:
    """ChronoEditPipeline called as WanGP's ChronoEdit image edit: the farm's image-model arguments
    in (num_images_per_prompt), a 5-frame edit rendered, its last frame out as the image. Every
    other attribute is the pipeline's."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> ImageResult:
        kwargs["num_videos_per_prompt"] = kwargs.pop("num_images_per_prompt", 1)
        result = self.pipe(**kwargs, num_frames=CHRONO_EDIT_FRAMES, enable_temporal_reasoning=False)
        return ImageResult(images=result.frames[:, -1])


def own_call(pipe: Any, preset: ModelPreset) -> Any:
    """The callable that renders `preset` over the loaded `pipe` where it is not the pipeline
    itself (ChronoEdit's image edit); None otherwise."""
    return ChronoEditImageCall(pipe) if preset.pipeline == CHRONO_EDIT else None
