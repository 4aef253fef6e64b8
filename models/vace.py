"""VACE's guide files as WanGP prepares them, for WanVACEPipeline (which letters of WanGP's
video_prompt_type WanFarm renders: models.vace_letters).

Read from wgp.py at Wan2GP 8681e9f7 (generate_media, preprocess_video_with_mask with the raw
process type, shared/utils/utils.py resize_and_remove_background with fit_into_canvas 1):
- the control video (`video_guide`, V): its frames sampled at the model's frame rate, each resized
  to the output size with Lanczos, as the pipeline's `video`;
- its mask (`video_mask`, A): read the same way, grey, thresholded at 127.5 (white: the area VACE
  renders, black: kept from the control video), as the pipeline's `mask`;
- reference images (`image_refs`, I): each fitted (Lanczos) into a white frame of the output size,
  centred, backgrounds kept, as the pipeline's `reference_images` (which then resize nothing).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from models.preset import ModelPreset
from models.request import GenerationRequest

VACE_PIPELINES = frozenset({"WanVACEPipeline"})
# WanGP's threshold of a grey mask frame (cv2.threshold at 127.5).
_MASK_THRESHOLD = 127.5


class GuideUnreadable(ValueError):
    """A guide file that cannot feed the pipeline: not a video, or too short; the message says which."""


def takes_guides(preset: ModelPreset) -> bool:
    return preset.pipeline in VACE_PIPELINES


def vace_kwargs(preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """WanVACEPipeline's guide arguments for `request` (video, mask, reference_images); {} when
    the pipeline is not VACE's. Without guides the pipeline renders from text."""
    if not takes_guides(preset):
        return {}
    if preset.fps is None:
        raise ValueError(f"{preset.id}: a VACE model needs its frame rate to read a control video")
    fps = preset.fps
    from PIL import Image

    size = (request.width, request.height)
    kwargs: dict[str, Any] = {}
    if request.video_guide is not None:
        kwargs["video"] = read_video(request.video_guide, request.frames, size, fps, "video_guide")
    if request.video_mask is not None:
        frames = read_video(request.video_mask, request.frames, size, fps, "video_mask")
        kwargs["mask"] = [_binary(frame) for frame in frames]
    if request.image_refs:
        refs = []
        for path in request.image_refs:
            with Image.open(path) as image:
                refs.append(_fitted(image.convert("RGB"), size))
        kwargs["reference_images"] = refs
    return kwargs


def guide_problems(preset: ModelPreset, request: GenerationRequest) -> list[str]:
    """A line per guide video of a VACE job too short for its frames, from the file's header (no
    frame decoded), so the job is refused before it runs; a header without a frame count says nothing."""
    if not takes_guides(preset) or preset.fps is None:
        return []
    import av

    problems = []
    for key, path in (("video_guide", request.video_guide), ("video_mask", request.video_mask)):
        if path is None:
            continue
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                held, rate = stream.frames, stream.average_rate
        except (av.error.FFmpegError, IndexError) as error:
            problems.append(f"{key}: {path.name} is not a readable video: {error}")
            continue
        if held and rate and int(Fraction(request.frames - 1) * Fraction(rate) / preset.fps) >= held:
            problems.append(_too_short(key, path, held, Fraction(rate), preset.fps, request.frames))
    return problems


def read_video(path: Path, count: int, size: tuple[int, int], fps: int, key: str) -> list[Any]:
    """`count` frames of the video at `path` sampled at `fps` (WanGP reads a guide at the model's
    frame rate), each resized to `size` (width, height) with Lanczos as WanGP does."""
    import av
    from PIL import Image

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or Fraction(fps)
            decoded = [frame.to_image().convert("RGB") for frame in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as error:  # IndexError: a file without a video stream
        raise GuideUnreadable(f"{key}: {path.name} is not a readable video: {error}") from None
    # Output frame i shows the source at time i / fps.
    picks = [int(Fraction(index) * Fraction(rate) / fps) for index in range(count)]
    if not decoded or picks[-1] >= len(decoded):
        raise GuideUnreadable(_too_short(key, path, len(decoded), Fraction(rate), fps, count))
    return [decoded[pick].resize(size, Image.Resampling.LANCZOS) for pick in picks]


def _too_short(key: str, path: Path, held: int, rate: Fraction, fps: int, count: int) -> str:
    at = f", about {held * fps / float(rate):.0f} at {fps} fps" if held and rate != fps else ""
    return f"{key}: {path.name} holds {held} frames at {float(rate):g} fps{at}; the video needs {count}"


def _fitted(image: Any, size: tuple[int, int]) -> Any:
    # WanGP's fit into the canvas: scaled to fit, centred on white.
    from PIL import Image

    width, height = size
    scale = min(height / image.height, width / image.width)
    inner = (int(image.width * scale), int(image.height * scale))
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(
        image.resize(inner, Image.Resampling.LANCZOS), ((width - inner[0]) // 2, (height - inner[1]) // 2)
    )
    return canvas


def _binary(frame: Any) -> Any:
    # WanGP: grey, thresholded at 127.5 (white: rendered); the pipeline reads an RGB mask.
    grey = frame.convert("L").point(lambda v: 255 if v > _MASK_THRESHOLD else 0)
    return grey.convert("RGB")
