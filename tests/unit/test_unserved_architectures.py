"""WanGP's Wan Animate definitions (defaults/animate.json, animate2.json, animate2_distilled.json at
Wan2GP 8681e9f7) are refused naming what the farm lacks; an architecture without a known reason keeps
the plain refusal."""

from __future__ import annotations

import json
from pathlib import Path

from models.catalogue import catalogue
from models.wangp_definitions import decide, parse_definition

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


def reason(model_id: str, data: object = None) -> str:
    definitions = json.loads(FIXTURE.read_text())["definitions"]
    verdict = decide(parse_definition(model_id, data or definitions[model_id]), catalogue())
    assert verdict.preset is None
    return verdict.reason


def test_wan_animate_is_refused_for_the_pose_and_face_extraction_wangp_runs() -> None:
    said = reason("animate")
    assert said.startswith("architecture 'animate' is not supported yet: ")
    assert all(word in said for word in ("DWPose", "face", "WanAnimatePipeline"))


def test_wan_animate_2_is_refused_for_its_reference_attention() -> None:
    for model_id in ("animate2", "animate2_distilled"):
        assert "animate2_log_scale" in reason(model_id)


def test_an_architecture_without_a_known_reason_is_refused_plainly() -> None:
    data = {"model": {"architecture": "not_a_wangp_architecture", "URLs": ["x.safetensors"]}}
    assert reason("other", data) == "architecture 'not_a_wangp_architecture' is not supported yet"
