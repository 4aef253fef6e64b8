"""Stable Audio 3 from WanGP's single files (models.sa3_layout): one file holds the DiT (under
`model.model.`) and the duration embedder (the `seconds_total` conditioner), in the module names of
WanGP's models/TTS/stable_audio3 at deepbeepmeep/Wan2GP 8681e9f7. The tiny Stable Audio 3 written in
that layout loads into the folder's very weights and renders the folder's track; a file's duration
embedder is read (a different one renders another track); and WanGP's Small SFX definition is served
from its own file over Small music's folder at its own defaults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.catalogue import catalogue, get_model
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.sa3_layout import load_sa3_pipeline
from models.single_file import SingleFileRefused
from models.tiny import build_tiny
from models.tiny_audio import build_stable_audio3, write_sa3_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from tests.served_definitions import served_file
from tests.torch_threads import one_torch_thread

TINY = get_model("stable-audio3-tiny")
FILE = "stable_audio3_tiny_finetune_bf16.safetensors"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
REQUEST = GenerationRequest("a drum loop", "", 1, 1, 1, 2, 1.0, None, "pingpong", 3, duration_seconds=2.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("sa3-tiny")
    build_tiny(TINY, built)
    return built


def test_the_file_has_wangps_names_and_loads_the_folders_weights(folder: Path, tmp_path: Path) -> None:
    path = write_sa3_single_file(tmp_path / FILE)
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    # WanGP's conditioned model: its DiT's ContinuousTransformer and two conditioners' weights.
    for name in (
        "model.model.transformer.layers.0.self_attn.to_qkv.weight",
        "model.model.transformer.layers.0.ff.ff.0.proj.weight",
        "model.model.transformer.project_in.weight",
        "model.model.to_timestep_embed.0.weight",
        "conditioner.conditioners.prompt.padding_embedding",
        "conditioner.conditioners.seconds_total.embedder.embedding.1.weight",
    ):
        assert name in keys
    pipe = load_sa3_pipeline(TINY, path, torch.float32, folder)
    expected = build_stable_audio3()
    for component in ("transformer", "duration_embedder"):
        loaded, built = (getattr(p, component).state_dict() for p in (pipe, expected))
        assert loaded.keys() == built.keys()
        assert all(torch.equal(loaded[key], value) for key, value in built.items()), component


def test_a_file_missing_a_key_is_refused_naming_it(folder: Path, tmp_path: Path) -> None:
    state = load_file(str(write_sa3_single_file(tmp_path / "full.safetensors")))
    del state["conditioner.conditioners.seconds_total.embedder.embedding.1.bias"]
    save_file(state, str(tmp_path / "cut.safetensors"))
    with pytest.raises(SingleFileRefused, match=r"cut.safetensors does not fit .*lacks linear\.bias"):
        load_sa3_pipeline(TINY, tmp_path / "cut.safetensors", torch.float32, folder)


def render_file(host: PipelineHost, name: str, body: bytes) -> np.ndarray:
    """The track of a definition named `name` whose file `name`.safetensors holds `body`."""
    with served_file(f"{name}.safetensors", body) as url:
        definition = {"model": {"architecture": TINY.id, "URLs": [url]}}
        verdict = decide(parse_definition(name, definition), catalogue())
        assert verdict.preset is not None, verdict.reason
        assert own_weights(verdict.preset) == (url,)
        output = host.generate(verdict.preset, REQUEST)
    assert output.info.model_file == f"{name}.safetensors" and output.audio is not None
    return output.audio[0].samples


def test_a_definition_with_its_own_file_renders_the_folders_track_and_reads_its_duration_embedder(
    tmp_path: Path,
) -> None:
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_folder = host.generate(TINY, REQUEST)
    assert from_folder.audio is not None
    same = render_file(host, "sa3_same_bf16", write_sa3_single_file(tmp_path / FILE).read_bytes())
    # The very weights (test above); the CPU's kernels round by the memory alignment of the tensors,
    # which a file's offsets and from_pretrained's differ in: equal to float rounding.
    assert np.abs(same - from_folder.audio[0].samples).max() < 1e-5
    other = build_stable_audio3()
    with torch.no_grad():
        other.duration_embedder.linear.weight.mul_(-1.0)
    moved = write_sa3_single_file(tmp_path / "moved.safetensors", other).read_bytes()
    assert np.abs(render_file(host, "sa3_moved_bf16", moved) - same).max() > 1e-3


def test_wangps_small_sfx_is_served_from_its_own_file_at_its_own_defaults() -> None:
    data = json.loads(FIXTURE.read_text())["definitions"]["stable_audio3_small_sfx"]
    preset = decide(parse_definition("stable_audio3_small_sfx", data), catalogue()).preset
    assert preset is not None and preset.derived_from == "stable-audio-3-small-music"
    assert [url.rsplit("/", 1)[-1] for url in own_weights(preset)] == [
        "stable_audio3_small_sfx_bf16.safetensors"
    ]
    assert (preset.defaults.num_inference_steps, preset.defaults.sample_solver) == (8, "pingpong")
