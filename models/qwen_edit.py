"""Qwen-Image-Edit's and Edit Plus's call arguments: the input images (WanGP's image_refs), the
output size they set, and WanGP's negative prompt.

As WanGP runs them (models/qwen/qwen_main.py at Wan2GP 8681e9f7) with video_prompt_type "KI", the
only reading the settings rules (models.wangp_keys, image_ref_letters) admit with images: the first
image is the main subject, and the output takes its aspect ratio at the canvas's pixel count, each
side rounded to the model's block (calculate_new_dimensions); Edit stitches several images side by
side into one (each next one at the first one's height), Edit Plus takes them as a list. An empty
negative prompt is WanGP's own. Unlike WanGP, diffusers' pipelines encode each input image at about
1024x1024 pixels (Edit Plus's vision input at 384x384), whatever its size.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from models.flux_refs import stitched
from models.preset import ModelPreset
from models.qwen_processor import QWEN_VL_PIPELINES
from models.request import GenerationRequest

# qwen_main.py generate(): the negative prompt when the job's is empty.
WANGP_NEGATIVE = "text, watermark, copyright, blurry, low resolution"


def qwen_edit_kwargs(preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """The arguments a Qwen edit call takes beyond the common ones; {} for other pipelines.
    ValueError, naming image_refs, for a job without images: these pipelines edit images."""
    if preset.pipeline not in QWEN_VL_PIPELINES:
        return {}
    if not request.image_refs:
        raise ValueError(
            f"image_refs: {preset.id} edits input images; give image_refs with video_prompt_type 'KI' "
            "(WanGP's Edit Plus also renders from the prompt alone, which the farm does not yet)"
        )
    images = []
    for path in request.image_refs:
        with Image.open(path) as opened:
            images.append(opened.convert("RGB"))
    width, height = preset.sizes.fit((request.width, request.height), images[0].size)
    return {
        "image": stitched(images) if preset.pipeline == "QwenImageEditPipeline" else images,
        "width": width,
        "height": height,
        "negative_prompt": request.negative_prompt or WANGP_NEGATIVE,
    }
