"""Wan 2.1 image-to-video in tiny (wan-i2v-tiny: the network of Wan 2.1 I2V and of WanGP's Fun InP
models) through `wanfarm render`, and a WanGP definition over it whose transformer file is in the
original key layout with the image branch (img_emb, k_img/v_img), as WanGP's
wan2.1_Fun_InP_1.3B_bf16.safetensors is (Wan2GP 8681e9f7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from controller.cli import main
from models.catalogue import catalogue, definitions_in, get_model
from models.tiny import build_tiny, component_bytes
from models.tiny_wan_i2v import wan_i2v_transformer
from models.tiny_wan_offshoots import write_original_single_file
from models.wangp_definitions import own_weights
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import definitions_folder, served_file
from tests.torch_threads import one_torch_thread

FILE = "wan2.1_Fun_InP_tiny_bf16.safetensors"
JOB = {"prompt": "a fox", "resolution": "48x32", "seed": 5, "video_length": 9, "image_prompt_type": "S"}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def render(tmp_path: Path, cache: Path, model: str, image: str = "start.png") -> Path:
    job = tmp_path / f"{model}.json"
    job.write_text(json.dumps(JOB | {"model_type": model, "image_start": image}))
    out = tmp_path / f"out-{model}"
    assert main(["render", str(job), "--out", str(out), "--cache", str(cache)]) == 0
    [video] = list(out.glob("*.mp4"))
    return video


def test_the_tiny_presets_bytes_are_its_built_folders(tmp_path: Path) -> None:
    preset = get_model("wan-i2v-tiny")
    build_tiny(preset, tmp_path / "built")
    built = component_bytes(tmp_path / "built")
    assert {c.name: c.bytes for c in preset.components} == {c.name: built[c.name] for c in preset.components}


def test_the_tiny_renders_an_mp4_that_follows_its_start_image(tmp_path: Path, cache_dir: Path) -> None:
    Image.new("RGB", (48, 32), (230, 40, 30)).save(tmp_path / "start.png")
    Image.new("RGB", (48, 32), (20, 40, 230)).save(tmp_path / "other.png")
    red = render(tmp_path, cache_dir, "wan-i2v-tiny")
    decoded = read_mp4(red)
    assert (decoded.frame_count, decoded.width, decoded.height, float(decoded.fps)) == (9, 48, 32, 16)
    metadata = read_metadata(red)
    assert metadata is not None and metadata["model_type"] == "wan-i2v-tiny" and metadata["seed"] == 5
    (tmp_path / "out-wan-i2v-tiny").rename(tmp_path / "out-red")
    blue = render(tmp_path, cache_dir, "wan-i2v-tiny", "other.png")
    assert not np.array_equal(read_mp4(blue).frames, decoded.frames)


def test_a_definitions_file_in_the_original_layout_loads_into_the_same_weights(
    models_dir: Path, tmp_path: Path
) -> None:
    Image.new("RGB", (48, 32), (230, 40, 30)).save(tmp_path / "start.png")
    moved = wan_i2v_transformer()
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    files = {
        "same": write_original_single_file(tmp_path / "same.safetensors", wan_i2v_transformer()).read_bytes(),
        "moved": write_original_single_file(tmp_path / FILE, moved).read_bytes(),
    }
    assert any(b"img_emb.proj.1.weight" in body for body in files.values())  # the original names
    cache = tmp_path / "cache"
    videos = {}
    for name, body in files.items():
        with served_file(FILE, body) as url:
            definition = {"model": {"architecture": "wan-i2v-tiny", "URLs": [url]}, "flow_shift": 3.0}
            (models_dir / f"fun_tiny_{name}.json").write_text(json.dumps(definition))
            videos[name] = render(tmp_path, cache, f"fun_tiny_{name}")
    videos["base"] = render(tmp_path, cache, "wan-i2v-tiny")
    frames = {name: read_mp4(video).frames for name, video in videos.items()}
    assert np.array_equal(frames["same"], frames["base"])
    assert not np.array_equal(frames["moved"], frames["base"])
    metadata = read_metadata(videos["moved"])
    assert metadata is not None and metadata["model_filename"] == FILE


def test_wangps_fun_inp_1_3b_is_the_catalogues_model_and_its_finetunes_load_their_files(
    tmp_path: Path,
) -> None:
    # defaults/fun_inp_1.3B.json at Wan2GP 8681e9f7 (its model block: no settings of its own).
    own = {"model": {"architecture": "fun_inp_1.3B", "URLs": ["wan2.1_Fun_InP_1.3B_bf16.safetensors"]}}
    finetune = {"model": {"architecture": "fun_inp_1.3B", "URLs": ["fun_inp_1.3B_ft_bf16.safetensors"]}}
    for name, data in {"fun_inp_1.3B": own, "fun_inp_1.3B_ft": finetune}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    verdicts = {v.id: v for v in definitions_in(tmp_path, catalogue())}
    fun = get_model("wan2.1-fun-inp-1.3b")
    assert verdicts["fun_inp_1.3B"].catalogue_own and verdicts["fun_inp_1.3B"].preset == fun
    # WanGP's defaults for a 480p image-to-video model (get_factory_settings: flow shift 7).
    assert (fun.defaults.resolution, fun.defaults.flow_shift, fun.defaults.num_inference_steps) == (
        "832x480",
        7.0,
        30,
    )
    assert (fun.pipeline, fun.latent.hidden, fun.latent.layers) == ("WanImageToVideoPipeline", 1536, 30)
    derived = verdicts["fun_inp_1.3B_ft"].preset
    assert derived is not None and derived.derived_from == fun.id
    assert own_weights(derived) == ("fun_inp_1.3B_ft_bf16.safetensors",)
