"""A two-expert Wan 2.2 definition with files of its own: URLs hold the high-noise expert
(`transformer`), URLs2 the low-noise one (`transformer_2`), each one file in the original Wan layout
(as WanGP's defaults/t2v_2_2.json at 8681e9f7 lists them), loaded over the base's diffusers folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.runner import PipelineHost
from models.single_file import load_pipeline
from models.tiny import write_wan_single_file
from models.weights import WeightCache
from tests.integration.test_definition_weights import models_dir  # noqa: F401 (a fixture)
from tests.tiny_requests import cache_as, tiny_wan_request
from tests.two_experts import two_expert_wan
from tests.unit.loopback_http import Asked, Reply, scripted_server

PRESET = get_model("wan2.2-t2v-a14b")  # the tiny two-expert Wan stands in for its weights
HIGH, LOW = "tiny_t2v_2_2_high_mbf16.safetensors", "tiny_t2v_2_2_low_mbf16.safetensors"
REQUEST = tiny_wan_request(guidance_scale_2=1.0, steps=4)


def render(pipe: Any) -> bytes:
    pipe.set_progress_bar_config(disable=True)
    configure_scheduler(pipe, PRESET, REQUEST)
    with torch.inference_mode():
        result = pipe(**pipeline_kwargs(pipe, PRESET, REQUEST, torch.Generator().manual_seed(REQUEST.seed)))
    return (np.clip(np.asarray(result.frames), 0.0, 1.0) * 255.0).round().astype(np.uint8).tobytes()


def test_two_single_files_load_as_the_folders_two_experts(tmp_path: Path) -> None:
    pipe = two_expert_wan(0.875)
    folder = tmp_path / "folder"
    pipe.save_pretrained(folder, safe_serialization=True)
    write_wan_single_file(tmp_path / HIGH, pipe.transformer)
    write_wan_single_file(tmp_path / LOW, pipe.transformer_2)
    loaded = load_pipeline(PRESET, tmp_path / HIGH, torch.float32, folder, tmp_path / LOW)
    for name in ("transformer", "transformer_2"):
        want, got = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[key], got[key]) for key in want), name
    assert render(loaded) == render(pipe)
    # Each file goes to its own expert: swapped, the render changes.
    swapped = load_pipeline(PRESET, tmp_path / LOW, torch.float32, folder, tmp_path / HIGH)
    assert render(swapped) != render(pipe)


@pytest.mark.usefixtures("models_dir")  # $WANFARM_MODELS: a fresh folder of definitions
def test_a_two_expert_definition_renders_its_own_files_through_the_host(tmp_path: Path) -> None:
    definitions = Path(os.environ["WANFARM_MODELS"])
    pipe = two_expert_wan(0.875)
    # The finetune's experts are the base's, swapped: frames other than the base's.
    write_wan_single_file(tmp_path / HIGH, pipe.transformer_2)
    write_wan_single_file(tmp_path / LOW, pipe.transformer)
    asked: list[str] = []

    def script(request: Asked) -> Reply:
        asked.append(request.target)
        name = request.target.removeprefix("/files/")
        found = name in (HIGH, LOW)
        return Reply(
            200 if found else 404,
            (tmp_path / name).read_bytes() if found else b"",
            "application/octet-stream",
        )

    with scripted_server(script) as base_url:
        model = {"name": "Tiny 2.2", "architecture": "t2v_2_2", "URLs": [f"{base_url}/files/{HIGH}"]}
        model["URLs2"] = [f"{base_url}/files/{LOW}"]
        (definitions / "tiny_t2v_2_2.json").write_text(json.dumps({"model": model}))
        cache = WeightCache(tmp_path / "cache")
        cache_as(cache, PRESET, pipe)
        host = PipelineHost(cache, device="cpu")
        output = host.generate(get_model("tiny_t2v_2_2"), REQUEST)
    assert sorted(asked) == [f"/files/{HIGH}", f"/files/{LOW}"]
    assert output.info.model_file == HIGH and output.info.weights_source == "download"
    assert (cache.folder(get_model("tiny_t2v_2_2")) / LOW).is_file()
    swapped = WeightCache(tmp_path / "swapped")
    cache_as(swapped, PRESET, two_expert_wan(0.875))
    direct = swapped.folder(PRESET)
    pipe_swapped = load_pipeline(PRESET, tmp_path / HIGH, torch.float32, direct, tmp_path / LOW)
    assert output.frames.tobytes() == render(pipe_swapped)
    base = PipelineHost(cache, device="cpu").generate(PRESET, REQUEST)
    assert output.frames.tobytes() != base.frames.tobytes()
