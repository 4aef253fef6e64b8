"""Z-Image ControlNet through `wanfarm render` (WanGP z_image_control*, Wan2GP 8681e9f7
models/z_image): the tiny control model renders z-image-tiny's very image without a control image
(WanGP's control transformer adds nothing then), another with one (image_guide with V in
video_prompt_type), at the control image's aspect ratio, its settings read back from the PNG; a
definition naming a ControlNet module file in WanGP's layout renders with that module beside the
tiny folder; letters and inputs the farm cannot render exit 2 naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from models.qwen_layouts import COMFY_PREFIX
from models.tiny_z_image_control import write_control_module, z_image_controlnet
from processing.image import read_png
from processing.metadata import read_metadata
from tests.served_definitions import definitions_folder, served_file
from tests.torch_threads import one_torch_thread

BASE = {"model_type": "z-image-control-tiny", "prompt": "a fox", "resolution": "64x64", "seed": 3}
CONTROLLED = BASE | {"video_prompt_type": "V", "image_guide": "pose.png"}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    # A 2:1 control image: on a 64x64 canvas WanGP renders 96x48 (its aspect at the canvas's
    # pixels, sides rounded to 16), the image resized to it.
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = (230, 200, 40)
    Image.fromarray(pixels).save(tmp_path / "pose.png")
    return tmp_path


def render(settings: dict[str, object], folder: Path, out: Path, cache: Path) -> int:
    job = folder / "job.json"
    job.write_text(json.dumps(settings))
    return main(["render", str(job), "--out", str(out), "--cache", str(cache)])


def rendered(out: Path) -> tuple[np.ndarray, dict[str, object]]:
    [image] = list(out.glob("*.png"))
    metadata = read_metadata(image)
    assert metadata is not None
    return np.asarray(read_png(image)), metadata


def test_without_a_control_image_it_renders_the_tiny_z_images_image(folder: Path, cache_dir: Path) -> None:
    assert render(BASE, folder, folder / "control", cache_dir) == 0
    assert render(BASE | {"model_type": "z-image-tiny"}, folder, folder / "plain", cache_dir) == 0
    control, metadata = rendered(folder / "control")
    plain, _ = rendered(folder / "plain")
    assert np.array_equal(control, plain)
    assert metadata["control_net_weight"] == 0.75  # WanGP's default, recorded
    assert "image_guide" not in metadata


def test_a_control_image_steers_the_image_at_its_weight_and_reads_back(folder: Path, cache_dir: Path) -> None:
    assert render(BASE, folder, folder / "plain", cache_dir) == 0
    assert render(CONTROLLED | {"control_net_weight": 0.5}, folder, folder / "guided", cache_dir) == 0
    assert render(CONTROLLED | {"control_net_weight": 0}, folder, folder / "nothing", cache_dir) == 0
    guided, metadata = rendered(folder / "guided")
    assert guided.shape == (48, 96, 3)
    assert metadata["image_guide"] == "pose.png" and metadata["video_prompt_type"] == "V"
    assert metadata["control_net_weight"] == 0.5 and metadata["model_type"] == "z-image-control-tiny"
    # At weight 0 the control adds nothing: the plain image at the control image's size.
    nothing, _ = rendered(folder / "nothing")
    assert nothing.shape == guided.shape and not np.array_equal(nothing, guided)
    # Its settings render it again, to the same pixels.
    again_job = {key: value for key, value in metadata.items() if not key.startswith("wanfarm")}
    assert render(again_job, folder, folder / "again", cache_dir) == 0
    assert np.array_equal(rendered(folder / "again")[0], guided)


def test_a_control_image_without_v_is_not_read_as_in_wangp_and_said_so(
    folder: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unread = BASE | {"image_guide": "pose.png", "resolution": "96x48"}
    assert render(unread, folder, folder / "unread", cache_dir) == 0
    said = capsys.readouterr()
    assert 'image_guide: "pose.png" is not used: the control image is read only with V' in said.out + said.err
    assert render(BASE | {"resolution": "96x48"}, folder, folder / "plain", cache_dir) == 0
    image, metadata = rendered(folder / "unread")
    assert np.array_equal(image, rendered(folder / "plain")[0])
    assert "video_prompt_type" not in metadata


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (CONTROLLED | {"video_prompt_type": "PV"}, 'video_prompt_type: "PV" is not supported by WanFarm yet'),
        (BASE | {"video_prompt_type": "V"}, 'video_prompt_type: "V" is not supported by WanFarm yet'),
        (CONTROLLED | {"control_net_weight": 3}, "control_net_weight: 3 is not supported by WanFarm yet"),
        (CONTROLLED | {"model_type": "z-image-tiny"}, "image_guide: z-image-tiny takes no control image"),
    ],
)
def test_what_it_cannot_render_exits_2_naming_it(
    settings: dict[str, object], named: str, folder: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render(settings, folder, folder / "out", cache_dir) == 2
    assert named in capsys.readouterr().err
    assert not (folder / "out").exists() or not list((folder / "out").glob("*.png"))


def test_a_definitions_controlnet_module_in_wangps_layout_renders_beside_the_folder(
    folder: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny folder's own ControlNet, written as WanGP's module files hold it (the release's
    # attention names, ComfyUI's prefix): the definition renders the folder's very image.
    module = write_control_module(
        tmp_path / "tiny_control_module_bf16.safetensors",
        z_image_controlnet("z_image_control"),
        True,
        COMFY_PREFIX,
    )
    asked: list[str] = []
    with (
        served_file(module.name, module.read_bytes(), asked) as url,
        definitions_folder(tmp_path / "models", monkeypatch) as models,
    ):
        definition = {"model": {"architecture": "z-image-control-tiny", "modules": [[url]]}}
        (models / "tiny_control_union.json").write_text(json.dumps(definition))
        job = CONTROLLED | {"model_type": "tiny_control_union"}
        assert render(job, folder, folder / "module", cache_dir) == 0
        assert asked == [f"/files/{module.name}"]
        assert render(CONTROLLED, folder, folder / "own", cache_dir) == 0
    image, metadata = rendered(folder / "module")
    assert np.array_equal(image, rendered(folder / "own")[0])
    assert metadata["model_type"] == "tiny_control_union" and metadata["image_guide"] == "pose.png"


@pytest.mark.parametrize("model_type", ["z_image_control", "z_image_control2", "z_image_control2_1"])
def test_every_control_architecture_takes_a_control_image(model_type: str, folder: Path) -> None:
    job = folder / "job.json"
    job.write_text(json.dumps(CONTROLLED | {"model_type": model_type, "resolution": "1024x1024"}))
    assert main(["render", str(job), "--dry-run"]) == 0
