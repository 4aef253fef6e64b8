"""Qwen-Image-Layered (WanGP qwen_image_layered_20B, Wan2GP 8681e9f7 models/qwen) stays refused,
naming what WanGP renders that the farm cannot: batch_size RGBA layers of one call at the canvas
size with its own schedule (models/qwen/pipeline_qwenimage.py), where diffusers'
QwenImageLayeredPipeline denoises an extra composite slot at a 640/1024 bucket."""

from __future__ import annotations

import json
from pathlib import Path

from models.catalogue import catalogue
from models.wangp_definitions import decide, parse_definition

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


def test_qwen_image_layered_is_refused_naming_what_wangp_renders() -> None:
    model_id = "qwen_image_layered_20B"
    data = json.loads(FIXTURE.read_text())["definitions"][model_id]
    verdict = decide(parse_definition(model_id, data), catalogue())
    assert verdict.preset is None and verdict.reason.startswith(
        f"architecture {model_id!r} is not supported yet: "
    )
    assert all(word in verdict.reason for word in ("RGBA", "QwenImageLayeredPipeline", "batch_size"))
