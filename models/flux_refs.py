"""The FLUX edit models' extra call arguments: reference images (WanGP's image_refs) and the
output size of FLUX.1 Kontext, and the negative prompt of FLUX.2 Klein's true CFG.

As WanGP prepares them (wgp.py resize_and_remove_background with video_prompt_type "KI", then
models/flux/flux_main.py): the first image is the main subject, resized to the canvas; each other
one keeps its aspect ratio at the canvas's pixel count, its sides rounded to the model's block.
Kontext stitches them side by side into one image (each next one at the first one's height) and
its pipeline resizes that to the nearest of Kontext's preferred sizes, as WanGP's resizeinput does;
FLUX.2 takes them as a list. The settings rules (models.wangp_keys) admit image_refs only with
"KI", so that is the one reading here.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from models.preset import ModelPreset
from models.request import GenerationRequest

# The negative prompt WanGP's Flux generate() uses when the job's is empty (flux_main.py).
WANGP_NEGATIVE = (
    "low quality, ugly, unfinished, out of focus, deformed, disfigure, blurry, smudged, "
    "restricted palette, flat colors"
)


def flux_call_kwargs(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """The arguments a FLUX Kontext / FLUX.2 call takes beyond the common ones; {} for others."""
    kwargs: dict[str, Any] = {}
    if preset.pipeline == "FluxKontextPipeline":
        # Its pipeline rescales the output to max_area (1024^2 by default); WanGP renders the size asked.
        kwargs["max_area"] = request.width * request.height
    if request.image_refs and preset.pipeline in (
        "FluxKontextPipeline",
        "Flux2Pipeline",
        "Flux2KleinPipeline",
    ):
        images = reference_images(request, preset.sizes.multiple)
        kwargs["image"] = stitched(images) if preset.pipeline == "FluxKontextPipeline" else images
    if preset.pipeline == "Flux2KleinPipeline" and klein_cfg(pipe, request):
        kwargs["negative_prompt_embeds"] = _negative_embeds(pipe, request.negative_prompt or WANGP_NEGATIVE)
    return kwargs


def reference_images(request: GenerationRequest, block: int) -> list[Image.Image]:
    """The job's reference images as WanGP sizes them for "KI" on a width x height canvas."""
    images = []
    for index, path in enumerate(request.image_refs):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        if index == 0:
            size = (request.width, request.height)
        else:
            scale = (request.width * request.height / (image.width * image.height)) ** 0.5
            size = (
                int(round(image.width * scale / block) * block),
                int(round(image.height * scale / block) * block),
            )
        images.append(image if image.size == size else image.resize(size, Image.Resampling.LANCZOS))
    return images


def stitched(images: list[Image.Image]) -> Image.Image:
    """Kontext's one conditioning image: the images side by side, each at the first one's height."""
    result = images[0]
    for image in images[1:]:
        width = int(image.width * result.height / image.height)
        resized = image.resize((width, result.height), Image.Resampling.LANCZOS)
        joined = Image.new("RGB", (result.width + width, result.height))
        joined.paste(result, (0, 0))
        joined.paste(resized, (result.width, 0))
        result = joined
    return result


def klein_cfg(pipe: Any, request: GenerationRequest) -> bool:
    """Whether the Klein pipeline runs true CFG (its base model, guidance above 1)."""
    return request.guidance_scale > 1 and not pipe.config.is_distilled


def _negative_embeds(pipe: Any, text: str) -> Any:
    import torch

    with torch.inference_mode():
        embeds, _ = pipe.encode_prompt(prompt=text, device=pipe._execution_device)
    return embeds
