"""WanGP's VACE module over weights other than its backbone (Wan2GP 8681e9f7: vace_14B_fusionix,
vace_14B_sf over a finetune's file; vace_14B_2_2 and its cocktail over Wan 2.2 t2v's two experts):
the definition's text-to-video files with the module's blocks merged into each transformer, over
the folder of the catalogue's VACE model of that architecture. In tiny: the tiny VACE's backbone
and module files (the original key layout) render the tiny VACE folder's very video through
`wanfarm render` with guides; a two-expert tiny VACE's two backbone files and one module render
its video through the pipeline host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from controller.cli import main
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.runner import PipelineHost
from models.tiny_vace import two_expert_vace, write_vace_files
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.test_vace_render import render
from tests.served_definitions import definitions_folder
from tests.tiny_requests import cache_as, tiny_wan_request
from tests.torch_threads import one_torch_thread
from tests.unit.loopback_http import Asked, Reply, scripted_server
from tests.unit.test_vace import grey, write_video

FUN = get_model("wan2.2-vace-fun-a14b")  # the tiny two-expert VACE stands in for its folder


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


@pytest.fixture
def guides(tmp_path: Path) -> Path:
    """A control video from dark to light, a mask whose right half is rendered, a red subject."""
    write_video(tmp_path / "guide.mp4", [grey(20 * i, (64, 64)) for i in range(9)], fps=16)
    half = np.concatenate([grey(0, (64, 32)), grey(255, (64, 32))], axis=1)
    write_video(tmp_path / "mask.mp4", [half] * 9, fps=16)
    Image.new("RGB", (32, 48), (210, 40, 30)).save(tmp_path / "ref.png")
    return tmp_path


@pytest.fixture
def files_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A loopback server of the files under tmp_path/files; yields its base URL and the paths asked."""
    asked: list[str] = []

    def script(request: Asked) -> Reply:
        asked.append(request.target)
        path = tmp_path / "files" / request.target.removeprefix("/files/")
        found = path.is_file()
        return Reply(200 if found else 404, path.read_bytes() if found else b"", "application/octet-stream")

    (tmp_path / "files").mkdir()
    with scripted_server(script) as base_url:
        yield f"{base_url}/files", asked


def test_a_t2v_file_and_the_vace_module_render_the_vace_folders_video(
    models_dir: Path, guides: Path, cache_dir: Path, files_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    # The tiny VACE split as WanGP ships VACE: a text-to-video file and the module of VACE blocks.
    backbone, module = write_vace_files(tmp_path / "files")
    base_url, asked = files_server
    # The module definition as WanGP's vace_14B holds it (one module, its precisions), and a
    # finetune naming it by model type, as vace_14B_fusionix names "vace_14B".
    module_definition = {"architecture": "wan-vace-tiny", "modules": [[f"{base_url}/{module.name}"]]}
    (models_dir / "tiny_vace_module.json").write_text(json.dumps({"model": module_definition}))
    finetune = {"architecture": "wan-vace-tiny", "URLs": [f"{base_url}/{backbone.name}"]}
    finetune["modules"] = ["tiny_vace_module"]
    (models_dir / "tiny_vace_finetune.json").write_text(json.dumps({"model": finetune}))
    settings = {
        "prompt": "a fox",
        "seed": 5,
        "video_length": 9,
        "video_prompt_type": "VAI",
        "video_guide": "guide.mp4",
        "video_mask": "mask.mp4",
        "image_refs": ["ref.png"],
        "remove_background_images_ref": 0,
    }
    own, folder = guides / "own", guides / "folder"
    assert render(cache_dir, settings | {"model_type": "tiny_vace_finetune"}, guides, own) == 0
    assert sorted(asked) == [f"/files/{backbone.name}", f"/files/{module.name}"]
    assert render(cache_dir, settings | {"model_type": "wan-vace-tiny"}, guides, folder) == 0
    [video] = own.glob("*.mp4")
    [folder_video] = folder.glob("*.mp4")
    assert np.array_equal(read_mp4(video).frames, read_mp4(folder_video).frames)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_filename"] == backbone.name
    assert metadata["video_prompt_type"] == "VAI"


def test_the_module_alone_over_a_vace_models_own_folder_is_refused_by_name(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tiny VACE's folder holds VACE blocks already: WanGP would merge the module twice.
    module = {"architecture": "wan-vace-tiny", "modules": [["https://x/tiny_vace_module.safetensors"]]}
    (models_dir / "tiny_vace_module.json").write_text(json.dumps({"model": module}))
    assert main(["models"]) == 0
    assert (
        "refused tiny_vace_module (wan-vace-tiny): the VACE module over the files of wan-vace-tiny's "
        "own VACE model, which hold VACE blocks already"
    ) in capsys.readouterr().out


def render_pipe(pipe: Any, request: Any) -> bytes:
    pipe.set_progress_bar_config(disable=True)
    configure_scheduler(pipe, FUN, request)
    with torch.inference_mode():
        result = pipe(**pipeline_kwargs(pipe, FUN, request, torch.Generator().manual_seed(request.seed)))
    return (np.clip(np.asarray(result.frames), 0.0, 1.0) * 255.0).round().astype(np.uint8).tobytes()


def test_wan_2_2s_two_experts_each_take_the_one_vace_module(
    models_dir: Path, tmp_path: Path, files_server: tuple[str, list[str]]
) -> None:
    pipe = two_expert_vace(0.875)
    files = tmp_path / "files"
    high, module = write_vace_files(files, pipe.transformer, "high")
    low, low_module = write_vace_files(files, pipe.transformer_2, "low")
    assert module.read_bytes() == low_module.read_bytes()  # one module, shared by the experts
    base_url, asked = files_server
    # As WanGP's defaults/vace_14B_2_2.json: Wan 2.2 t2v's experts (URLs, URLs2), vace_14B's module.
    vace = {"architecture": "vace_14B", "modules": [[f"{base_url}/{module.name}"]], "URLs": "t2v"}
    t2v = {
        "architecture": "t2v_2_2",
        "URLs": [f"{base_url}/{high.name}"],
        "URLs2": [f"{base_url}/{low.name}"],
    }
    mine = {"architecture": "vace_14B_2_2", "modules": ["vace_14B"], "URLs": "tiny_t2v", "URLs2": "tiny_t2v"}
    for name, model in (("vace_14B", vace), ("tiny_t2v", t2v), ("tiny_vace_2_2", mine)):
        (models_dir / f"{name}.json").write_text(json.dumps({"model": model}))
    preset = get_model("tiny_vace_2_2")
    assert (preset.derived_from, preset.pipeline) == ("wan2.2-vace-fun-a14b", "WanVACEPipeline")
    write_video(tmp_path / "guide.mp4", [grey(25 * i, (64, 64)) for i in range(5)], fps=16)
    request = tiny_wan_request(
        guidance_scale_2=1.0, switch_threshold=875.0, video_guide=tmp_path / "guide.mp4"
    )
    cache = WeightCache(tmp_path / "cache")
    cache_as(cache, FUN, pipe)
    output = PipelineHost(cache, device="cpu").generate(preset, request)
    assert sorted(asked) == sorted(f"/files/{path.name}" for path in (high, low, module))
    assert output.info.model_file == high.name
    assert output.frames.tobytes() == render_pipe(pipe, request)
    # Each expert's own backbone counts: the folder's experts with the low one's backbone moved
    # again render other frames.
    with torch.no_grad():
        for name, parameter in pipe.transformer_2.named_parameters():
            if name.startswith("blocks."):
                parameter.add_(0.05)
    assert render_pipe(pipe, request) != output.frames.tobytes()
