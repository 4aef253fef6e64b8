"""HunyuanVideo 1.5 transformers from WanGP's single files (its original key layout, which diffusers
0.42 has no single-file mapping for: models.hunyuan15_layout, read from WanGP's model code at
deepbeepmeep/Wan2GP 8681e9f7, models/hyvideo/modules). The tiny transformer written in that layout
loads through the farm's loader into the very weights of the folder, and a WanGP definition naming
such a file renders the folder's frames from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.catalogue import catalogue, get_model
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.single_file import SingleFileRefused, load_transformer
from models.tiny import build_tiny
from models.tiny_hunyuan15 import transformer, write_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from tests.unit.loopback_http import Asked, Reply, scripted_server

TINY = get_model("hunyuan15-tiny")
FILE = "hy15_tiny_finetune_bf16.safetensors"
REQUEST = GenerationRequest("a red fox in the snow", "blurry", 64, 32, 5, 2, 6.0, 5.0, "euler", 7)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("hunyuan15-tiny")
    build_tiny(TINY, built)
    return built


def test_the_file_has_wangps_names_and_loads_into_the_folders_weights(folder: Path, tmp_path: Path) -> None:
    path = write_single_file(tmp_path / FILE)
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        qkv = handle.get_tensor("txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight")
    # WanGP's module names (HYVideo-1_5: q, k, v apart in the double blocks, fused in the refiner).
    for name in (
        "double_blocks.0.img_attn_q.weight",
        "double_blocks.0.txt_attn_k_norm.weight",
        "double_blocks.0.img_mlp.fc1.weight",
        "byt5_in.fc3.weight",
        "vision_in.proj.4.weight",
        "cond_type_embedding.weight",
        "final_layer.adaLN_modulation.1.weight",
    ):
        assert name in keys
    assert not any(key.startswith(("transformer_blocks.", "context_embedder")) for key in keys)
    inner = TINY.latent.hidden
    assert qkv.shape == (3 * inner, inner)

    loaded = load_transformer(TINY, path, torch.float32, folder)
    expected = transformer().state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in expected.items())


def test_a_file_missing_a_key_is_refused_naming_it(folder: Path, tmp_path: Path) -> None:
    path = write_single_file(tmp_path / "full.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle)
    del state["double_blocks.0.img_attn_proj.weight"]
    save_file(state, str(tmp_path / "cut.safetensors"))
    with pytest.raises(
        SingleFileRefused, match=r"lacks 1 key\(s\): transformer_blocks\.0\.attn\.to_out\.0\.weight"
    ):
        load_transformer(TINY, tmp_path / "cut.safetensors", torch.float32, folder)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback server holding the tiny transformer as a WanGP file; its URL."""
    body = write_single_file(tmp_path / FILE).read_bytes()

    def script(request: Asked) -> Reply:
        found = request.target == f"/files/{FILE}"
        return Reply(200 if found else 404, body if found else b"", "application/octet-stream")

    with scripted_server(script) as base_url:
        yield f"{base_url}/files/{FILE}"


def test_a_definition_with_its_own_file_renders_the_frames_of_the_same_weights(
    served: str, tmp_path: Path
) -> None:
    definition = {"model": {"architecture": "hunyuan15-tiny", "URLs": [served]}, "flow_shift": 7.0}
    verdict = decide(parse_definition("hy15_tiny_finetune", definition), catalogue())
    assert verdict.preset is not None, verdict.reason
    preset = verdict.preset
    assert own_weights(preset) == (served,)
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_file = host.generate(preset, REQUEST)
    assert from_file.info.model_file == FILE and from_file.info.weights_source == "download"
    from_folder = host.generate(TINY, REQUEST)
    assert from_folder.info.model_file == "" and host.loads == 2
    assert np.array_equal(from_file.frames, from_folder.frames)
