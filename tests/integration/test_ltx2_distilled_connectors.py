"""The 19B's distilled checkpoints read text connectors of their own (Wan2GP 8681e9f7:
models/ltx2/ltx2_handler.py _get_embeddings_connector_filename picks
ltx-2-19b-distilled_embeddings_connector.safetensors for ltx2_pipeline "distilled"; ltx2.py and
ltx_core/text_encoders/gemma load it). The tiny LTX-2 stands in for the 19B: its connectors written
in WanGP's layout, served on loopback as the distilled connectors file, load into exactly the
folder's weights and render the folder's video and soundtrack; a perturbed file renders another
video, the one its weights render when the folder holds them; a file that does not fit is refused
naming its keys."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from controller.cli import main
from models import ltx2_stages
from models.catalogue import get_model
from models.ltx2_connectors import connectors_url, load_connectors, original_name
from models.runner import GenerationOutput, PipelineHost
from models.settings import parse_settings, resolve
from models.single_file import SingleFileRefused
from models.tiny_ltx2 import build_ltx2, write_ltx2_connectors_file
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import definitions_folder, served_file
from tests.tiny_requests import cache_as
from tests.torch_threads import one_torch_thread

FILE = "ltx2-tiny-distilled_embeddings_connector.safetensors"
MODEL = "ltx2_tiny_distilled"
# WanGP's distilled definitions name their transformer and ltx2_pipeline only; the tiny's transformer
# is its folder's.
DEFINITION = {
    "model": {"name": "Tiny LTX-2 distilled", "architecture": "ltx2-tiny", "ltx2_pipeline": "distilled"}
}
JOB = {"model_type": MODEL, "prompt": "a red fox running through a snowy forest", "seed": 3}
ONE_STAGE = {"resolution": "64x64", "video_length": 9, "guidance_phases": 1}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        (folder / f"{MODEL}.json").write_text(json.dumps(DEFINITION))
        yield folder


def connectors_served(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The tiny model's distilled checkpoints read the connectors at `url`, as the 19B's read the hub's."""
    tiny = dataclasses.replace(ltx2_stages.MODELS["ltx2-tiny"], distilled_connectors=url)
    monkeypatch.setitem(ltx2_stages.MODELS, "ltx2-tiny", tiny)


def perturbed(connectors: Any) -> Any:
    """`connectors` with every video and audio weight moved by seeded noise (the projection kept)."""
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, tensor in connectors.named_parameters():
            if not name.startswith("text_proj_in"):
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return connectors


def render(cache: Path, tmp_path: Path) -> GenerationOutput:
    (generation,) = resolve(parse_settings(JOB | ONE_STAGE), tmp_path).generations
    return PipelineHost(WeightCache(cache)).generate(get_model(MODEL), generation.request)


def test_the_tiny_connectors_in_wangps_layout_load_into_exactly_the_folders_weights(tmp_path: Path) -> None:
    pipe = build_ltx2()
    path = write_ltx2_connectors_file(tmp_path / FILE)
    with safe_open(str(path), framework="pt") as handle:
        assert all(key.startswith("model.diffusion_model.") for key in handle.keys())  # noqa: SIM118
    other = build_ltx2()
    perturbed(other.connectors)
    load_connectors(other, path)
    mine, theirs = pipe.connectors.state_dict(), other.connectors.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


def test_a_distilled_definition_renders_its_connectors_file_as_the_folder_holding_those_weights(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = render(tmp_path / "folder", tmp_path)  # no file: the folder's connectors
    with served_file(FILE, write_ltx2_connectors_file(tmp_path / FILE).read_bytes()) as url:
        connectors_served(monkeypatch, url)
        assert connectors_url(get_model(MODEL)) == url
        same = render(tmp_path / "same", tmp_path)
    assert (tmp_path / "same" / MODEL / FILE).is_file() and same.info.weights_source == "download"
    assert same.frames.shape == (1, 9, 64, 64, 3)
    assert same.frames.tobytes() == folder.frames.tobytes()
    assert same.audio is not None and folder.audio is not None
    assert np.array_equal(same.audio[0].samples, folder.audio[0].samples)

    other = perturbed(build_ltx2().connectors)
    with served_file(
        FILE, write_ltx2_connectors_file(tmp_path / "other.safetensors", other).read_bytes()
    ) as url:
        connectors_served(monkeypatch, url)
        from_file = render(tmp_path / "other", tmp_path)
    assert from_file.frames.tobytes() != folder.frames.tobytes()
    # The same weights held by the folder itself, loaded as a folder is.
    monkeypatch.setitem(
        ltx2_stages.MODELS,
        "ltx2-tiny",
        dataclasses.replace(ltx2_stages.MODELS["ltx2-tiny"], distilled_connectors=""),
    )
    pipe = build_ltx2()
    pipe.connectors = other
    # Without a connectors file the definition renders from a folder of its own: that folder.
    cache_as(WeightCache(tmp_path / "direct"), get_model(MODEL), pipe)
    direct = render(tmp_path / "direct", tmp_path)
    assert from_file.frames.tobytes() == direct.frames.tobytes()
    assert from_file.audio is not None and direct.audio is not None
    assert np.array_equal(from_file.audio[0].samples, direct.audio[0].samples)


def test_wanfarm_render_renders_a_distilled_definition_with_its_connectors_file(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    settings = {"resolution": "128x64", "video_length": 17, "guidance_phases": 2}
    (tmp_path / "job.json").write_text(json.dumps(JOB | settings))
    out = tmp_path / "out"
    with served_file(FILE, write_ltx2_connectors_file(tmp_path / FILE).read_bytes()) as url:
        connectors_served(monkeypatch, url)
        assert main(["render", str(tmp_path / "job.json"), "--out", str(out), "--cache", str(cache_dir)]) == 0
    assert (cache_dir / MODEL / FILE).is_file()  # fetched beside the tiny folder it loads over
    [video] = list(out.glob("*.mp4"))
    decoded = read_mp4(video)
    # WanGP's distilled pipeline: two stages (guidance_phases 2) on the distilled schedule.
    assert (decoded.frame_count, decoded.width, decoded.height) == (17, 128, 64)
    metadata = read_metadata(video)
    assert metadata is not None and metadata["guidance_phases"] == 2
    assert metadata["wanfarm"]["audio"]["channels"] == 2


def test_a_connectors_file_missing_a_key_is_refused_naming_it(tmp_path: Path) -> None:
    whole = write_ltx2_connectors_file(tmp_path / "whole.safetensors")
    dropped = original_name("audio_connector.transformer_blocks.0.attn1.norm_k.weight")
    assert (
        dropped
        == "model.diffusion_model.audio_embeddings_connector.transformer_1d_blocks.0.attn1.k_norm.weight"
    )
    with safe_open(str(whole), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys() if key != dropped}  # noqa: SIM118
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(
        SingleFileRefused,
        match=r"partial.safetensors does not fit .* lacks 1 key\(s\): audio_connector.transformer_blocks.0.attn1.norm_k",  # noqa: E501
    ):
        load_connectors(build_ltx2(), tmp_path / "partial.safetensors")


def test_an_agent_warming_a_distilled_model_fetches_its_connectors_file_with_its_folder(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = WeightCache(tmp_path / "cache")
    with served_file(FILE, write_ltx2_connectors_file(tmp_path / FILE).read_bytes()) as url:
        connectors_served(monkeypatch, url)
        PipelineHost(cache).fetch(get_model(MODEL))
    assert (tmp_path / "cache" / MODEL / FILE).is_file()
    assert cache.is_cached(get_model("ltx2-tiny"))  # the folder it loads over
