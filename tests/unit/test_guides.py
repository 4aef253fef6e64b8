"""WanGP's guide inputs (video_guide, video_mask, image_refs): located on the models whose preset
lists them, refused by name on every other model, and recorded as written in the output's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.attachments import Attachments
from models.catalogue import get_model
from models.guides import MAX_IMAGE_REFS, read_guides
from models.preset import ModelPreset
from models.settings import SettingsError, parse_settings, resolve


def taking(*inputs: str) -> ModelPreset:  # a tiny model that takes these guides
    return get_model("wan-tiny").model_copy(update={"id": "guided-tiny", "inputs": list(inputs)})


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("guide.mp4", "mask.mp4", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_a_model_that_takes_guides_gets_each_file_located(files: Path) -> None:
    preset = taking("video_guide", "video_mask", "image_refs")
    problems: list[str] = []
    given = {"video_guide": "guide.mp4", "video_mask": ["mask.mp4"], "image_refs": ["a.png", "b.png"]}
    guides = read_guides(given, preset, Attachments.inside(files), [preset], problems)
    assert problems == []
    assert guides.video_guide == (files / "guide.mp4").resolve()
    assert guides.video_mask == (files / "mask.mp4").resolve()
    assert [p.name for p in guides.image_refs] == ["a.png", "b.png"]


def test_a_guide_given_to_a_model_without_it_is_refused_naming_the_models_that_take_it(files: Path) -> None:
    problems: list[str] = []
    read_guides({"video_guide": "guide.mp4"}, get_model("wan-tiny"), Attachments.inside(files), [], problems)
    assert problems == ["video_guide: wan-tiny takes no control video (models that do: none yet)"]


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"video_mask": "mask.mp4"}, "video_mask: a mask applies to a control video; give video_guide too"),
        ({"video_guide": ["guide.mp4", "mask.mp4"]}, "video_guide: 2 files given; WanGP reads one"),
        ({"image_refs": ["a.png"] * (MAX_IMAGE_REFS + 1)}, f"at most {MAX_IMAGE_REFS}"),
        ({"image_refs": ["missing.png"]}, "image_refs: file 'missing.png' not found"),
        ({"image_refs": "../a.png"}, "image_refs: '../a.png' is outside the folder"),
    ],
)
def test_bad_guides_are_refused_naming_the_key(files: Path, given: dict[str, object], problem: str) -> None:
    preset = taking("video_guide", "video_mask", "image_refs")
    problems: list[str] = []
    read_guides(given, preset, Attachments.inside(files), [], problems)
    assert any(problem in line for line in problems), problems


def test_a_settings_file_naming_a_guide_for_a_text_model_is_refused(files: Path) -> None:
    with pytest.raises(SettingsError, match="image_refs: wan-tiny takes no reference images"):
        resolve(
            parse_settings({"model_type": "wan-tiny", "image_refs": ["a.png"]}), Attachments.inside(files)
        )
