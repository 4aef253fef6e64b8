"""Krea 2 (WanGP architectures krea2_raw and krea2_turbo, Wan2GP 8681e9f7 models/krea2) served by
diffusers' Krea2Pipeline: WanGP's transformer files hold the original release's key layout
(models/krea2/krea2_mmdit.py), which the tiny transformer is written in here; it loads through the
farm's loader into the very weights of the tiny folder and renders the same image, and the tiny
model renders a PNG through `wanfarm render` with its settings in the metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from controller.cli import main
from models.catalogue import catalogue, get_model
from models.qwen_layouts import COMFY_PREFIX
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.single_file import load_transformer
from models.tiny import build_tiny
from models.tiny_krea2 import krea2_transformer, write_krea2_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from processing.image import read_png
from processing.metadata import read_metadata
from tests.unit.loopback_http import Asked, Reply, scripted_server

TINY = get_model("krea2-tiny")
FILE = "Krea2Tiny_bf16.safetensors"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("krea2-tiny")
    build_tiny(TINY, built)
    return built


@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
def test_the_original_layout_loads_into_the_folders_weights(
    prefix: str, folder: Path, tmp_path: Path
) -> None:
    path = write_krea2_single_file(tmp_path / FILE, prefix=prefix)
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        modulation = handle.get_tensor(f"{prefix}blocks.0.mod.lin")
    # The original release's module names (krea2_mmdit.py: first, blocks.N.attn.wq, txtfusion, last).
    for name in (
        "first.weight",
        "blocks.1.attn.wq.weight",
        "blocks.0.attn.qknorm.qnorm.scale",
        "txtfusion.projector.weight",
        "last.modulation.lin",
    ):
        assert prefix + name in keys
    assert not any("transformer_blocks" in key for key in keys)
    assert modulation.shape == (6 * TINY.latent.hidden,)  # flattened, as the release stores it

    loaded = load_transformer(TINY, path, torch.float32, folder).state_dict()
    expected = krea2_transformer().state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback server holding the tiny transformer as a WanGP file; its URL."""
    body = write_krea2_single_file(tmp_path / FILE).read_bytes()

    def script(request: Asked) -> Reply:
        found = request.target == f"/files/{FILE}"
        return Reply(200 if found else 404, body if found else b"", "application/octet-stream")

    with scripted_server(script) as base_url:
        yield f"{base_url}/files/{FILE}"


def test_a_definition_with_its_own_file_renders_the_image_of_the_same_weights(
    served: str, tmp_path: Path
) -> None:
    definition = {"model": {"architecture": "krea2-tiny", "URLs": [served]}, "guidance_scale": 0}
    verdict = decide(parse_definition("krea2_tiny_file", definition), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert own_weights(verdict.preset) == (served,)
    request = GenerationRequest("a fox in the snow", "", 64, 32, 1, 2, 0.0, None, "euler", 5)
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_file = host.generate(verdict.preset, request)
    assert from_file.info.model_file == FILE
    from_folder = host.generate(TINY, request)
    assert from_folder.info.model_file == "" and host.loads == 2
    assert np.array_equal(from_file.frames, from_folder.frames)


@pytest.mark.parametrize(
    ("model_id", "preset_id"), [("krea2_raw", "krea2-raw"), ("krea2_turbo", "krea2-turbo")]
)
def test_wangps_krea2_definitions_are_the_catalogues_krea2_models(model_id: str, preset_id: str) -> None:
    data = json.loads(FIXTURE.read_text())["definitions"][model_id]
    verdict = decide(parse_definition(model_id, data), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert verdict.catalogue_own and verdict.preset.id == preset_id
    assert verdict.preset.pipeline == "Krea2Pipeline"
    assert verdict.preset.defaults.num_inference_steps == data["num_inference_steps"]
    assert verdict.preset.defaults.guidance_scale == data["guidance_scale"]


@pytest.mark.parametrize("model_id", ["krea2_raw_edit", "krea2_turbo_edit"])
def test_the_edit_models_stay_refused_by_their_architecture(model_id: str) -> None:
    # WanGP feeds their reference images through Qwen3-VL's vision tower; Krea2Pipeline takes none.
    data = json.loads(FIXTURE.read_text())["definitions"][model_id]
    verdict = decide(parse_definition(model_id, data), catalogue())
    assert verdict.preset is None and model_id in verdict.reason


def test_the_tiny_krea2_renders_a_png_with_its_settings(tmp_path: Path, cache_dir: Path) -> None:
    job = tmp_path / "krea2.json"
    settings = {
        "model_type": "krea2-tiny",
        "prompt": "a fox",
        "resolution": "64x32",
        "num_inference_steps": 2,
        "seed": 6,
    }
    job.write_text(json.dumps(settings))
    assert main(["render", str(job), "--out", str(tmp_path / "out"), "--cache", str(cache_dir)]) == 0
    [image] = list((tmp_path / "out").glob("*.png"))
    pixels = read_png(image)
    assert pixels.shape == (32, 64, 3) and np.asarray(pixels).std() > 0
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == "krea2-tiny" and metadata["seed"] == 6
    assert metadata["num_inference_steps"] == 2 and metadata["guidance_scale"] == 3.5
