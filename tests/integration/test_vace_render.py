"""The tiny Wan VACE through `wanfarm render`: a control video, its mask and a reference image
change the video, the output's settings say which guides were used (WanGP's video_prompt_type
letters) and render it again to the same frames; letters WanFarm does not render, and a control
video shorter than the video, exit 2 naming the key; a definition with a VACE transformer file of
its own (WanGP's original layout) renders from it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from controller.cli import main
from models.tiny import write_wan_single_file
from models.tiny_vace import vace_transformer
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import definitions_folder, served_file
from tests.unit.test_vace import grey, write_video

BASE = {"model_type": "wan-vace-tiny", "prompt": "a fox", "resolution": "64x64", "video_length": 9, "seed": 5}


def render(cache_dir: Path, settings: dict[str, object], folder: Path, out: Path, *more: str) -> int:
    path = folder / "job.json"
    path.write_text(json.dumps(settings))
    return main(["render", str(path), "--out", str(out), "--cache", str(cache_dir), *more])


@pytest.fixture
def guides(tmp_path: Path) -> Path:
    """A control video fading from dark to light, a mask whose right half is rendered, a red subject."""
    write_video(tmp_path / "guide.mp4", [grey(20 * i, (64, 64)) for i in range(9)], fps=16)
    half = np.concatenate([grey(0, (64, 32)), grey(255, (64, 32))], axis=1)
    write_video(tmp_path / "mask.mp4", [half] * 9, fps=16)
    Image.new("RGB", (32, 48), (210, 40, 30)).save(tmp_path / "ref.png")
    return tmp_path


def test_guides_change_the_video_and_read_back_from_its_settings(guides: Path, cache_dir: Path) -> None:
    plain, guided = guides / "plain", guides / "guided"
    assert render(cache_dir, BASE, guides, plain) == 0
    settings = BASE | {
        "video_prompt_type": "VAI",
        "video_guide": "guide.mp4",
        "video_mask": "mask.mp4",
        "image_refs": ["ref.png"],
        "remove_background_images_ref": 0,
    }
    assert render(cache_dir, settings, guides, guided) == 0
    [first] = plain.glob("*.mp4")
    [video] = guided.glob("*.mp4")
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height) == (9, 64, 64)
    assert not np.array_equal(decoded.frames, read_mp4(first).frames)
    metadata = read_metadata(video)
    assert metadata is not None
    assert (metadata["video_prompt_type"], metadata["video_guide"], metadata["video_mask"]) == (
        "VAI",
        "guide.mp4",
        "mask.mp4",
    )
    assert metadata["image_refs"] == ["ref.png"]
    # The output's own settings render it again, its guides beside it.
    for name in ("guide.mp4", "mask.mp4", "ref.png"):
        shutil.copy(guides / name, guided / name)
    again = guides / "again"
    assert main(["render", str(video), "--out", str(again), "--cache", str(cache_dir)]) == 0
    [copy] = again.glob("*.mp4")
    assert np.array_equal(read_mp4(copy).frames, decoded.frames)


def test_files_alone_imply_their_letters(guides: Path, cache_dir: Path) -> None:
    out = guides / "out"
    assert render(cache_dir, BASE | {"video_guide": "guide.mp4"}, guides, out) == 0
    [video] = out.glob("*.mp4")
    metadata = read_metadata(video)
    assert metadata is not None and metadata["video_prompt_type"] == "V"


@pytest.mark.parametrize(
    "changes",
    [
        {"video_prompt_type": "PV", "video_guide": "guide.mp4"},  # pose extraction
        {"video_prompt_type": "I", "image_refs": ["ref.png"]},  # WanGP would remove the background
        {"video_prompt_type": "VA", "video_guide": "guide.mp4"},  # no mask
        {"video_guide": "guide.mp4", "video_length": 13},  # a control video of 9 frames
    ],
)
def test_letters_farm_cannot_render_exit_2_naming_the_key(
    changes: dict[str, object], guides: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = guides / "out"
    assert render(cache_dir, BASE | changes, guides, out) == 2
    key = "video_guide" if "video_length" in changes else "video_prompt_type"
    assert f"{key}: " in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


FILE = "wan_vace_tiny_finetune_mbf16.safetensors"


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_a_vace_definition_renders_its_own_file_in_wangps_layout(
    models_dir: Path, guides: Path, cache_dir: Path
) -> None:
    # The tiny VACE transformer in the original layout, VACE blocks included, every weight moved.
    original = write_wan_single_file(guides / "original.safetensors", vace_transformer())
    generator = torch.Generator().manual_seed(7)
    with safe_open(str(original), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle)
    moved = {
        key: tensor + 0.05 * torch.randn(tensor.shape, generator=generator) for key, tensor in state.items()
    }
    save_file(moved, str(guides / FILE))
    with served_file(FILE, (guides / FILE).read_bytes()) as url:
        definition = {"model": {"architecture": "wan-vace-tiny", "URLs": [url]}}
        (models_dir / "vace_tiny_finetune.json").write_text(json.dumps(definition))
        settings = {"video_guide": "guide.mp4", "seed": 5, "prompt": "a fox", "video_length": 9}
        own, base = guides / "own", guides / "base"
        assert render(cache_dir, settings | {"model_type": "vace_tiny_finetune"}, guides, own) == 0
    assert render(cache_dir, settings | {"model_type": "wan-vace-tiny"}, guides, base) == 0
    [video] = own.glob("*.mp4")
    [base_video] = base.glob("*.mp4")
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_filename"] == FILE
    assert not np.array_equal(read_mp4(video).frames, read_mp4(base_video).frames)
