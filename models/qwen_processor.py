"""Qwen-Image-Edit's `processor` component without its video half.

The edit pipelines read their input images through a Qwen2-VL processor (`processor/` of the
Qwen-Image-Edit repos: an image processor, a video processor and the tokenizer). transformers 5
builds the video processor only with torchvision, which the farm does not install, so the folder's
processor cannot load as written; the pipelines never pass videos. This one is the same processor
with the image processor (its PIL backend) and the tokenizer only, loaded from the same folder and
handed to `from_pretrained` in place of the folder's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

# Pipelines whose `processor` component is Qwen2-VL's.
QWEN_VL_PIPELINES = frozenset({"QwenImageEditPipeline", "QwenImageEditPlusPipeline"})


class ImageQwenVLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor for text and images (no video processor)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any
    ):
        # Qwen2VLProcessor's own token set-up, then the mixin with the two sub-processors only.
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def processor_parts(pipeline: str, folder: Path) -> dict[str, Any]:
    """Components to hand `from_pretrained` for `pipeline` loaded from the diffusers `folder`: the
    image-only processor for the Qwen edit pipelines, nothing for the others."""
    if pipeline not in QWEN_VL_PIPELINES:
        return {}
    return {"processor": ImageQwenVLProcessor.from_pretrained(folder / "processor")}
