"""LTX-2 transformers from single files in the original key layout (Lightricks' names, as WanGP's
`..._diffusion_model.safetensors` files hold them): a WanGP definition over the tiny LTX-2 naming
such a file renders from it, fetched into the weight cache, with the same frames and soundtrack
as the tiny model's own folder (the file holds the same weights); a file that does not fit is
refused naming its keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.catalogue import get_model
from models.ltx2_layout import PREFIX
from models.runner import PipelineHost
from models.single_file import SingleFileRefused, load_transformer
from models.tiny import build_tiny
from models.tiny_ltx2 import write_ltx2_single_file
from models.weights import WeightCache
from tests.served_definitions import definitions_folder, served_file
from tests.tiny_requests import tiny_wan_request

FILE = "ltx2_tiny_diffusion_model.safetensors"
# 64x64, 9 frames (LTX-2's 8k+1), 2 steps of Euler at guidance 3: CFG runs, the audio too.
REQUEST = tiny_wan_request(frames=9, steps=2, guidance_scale=3.0, flow_shift=None, sample_solver="euler")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback server holding the tiny LTX-2 transformer in the original layout; its URL."""
    with served_file(FILE, write_ltx2_single_file(tmp_path / FILE).read_bytes()) as url:
        yield url


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_a_definition_renders_the_tiny_ltx2_from_its_original_layout_file(
    served: str, models_dir: Path, tmp_path: Path
) -> None:
    definition = {"model": {"name": "Tiny LTX-2 file", "architecture": "ltx2-tiny", "URLs": [served]}}
    (models_dir / "ltx2_tiny_file.json").write_text(json.dumps(definition))
    preset = get_model("ltx2_tiny_file")
    assert preset.derived_from == "ltx2-tiny"
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_file = host.generate(preset, REQUEST)
    assert from_file.info.model_file == FILE and from_file.info.weights_source == "download"
    assert (tmp_path / "cache" / "ltx2_tiny_file" / FILE).is_file()
    from_folder = host.generate(get_model("ltx2-tiny"), REQUEST)
    assert from_folder.info.model_file == ""
    assert from_file.frames.shape == (1, 9, 64, 64, 3)
    assert from_file.frames.tobytes() == from_folder.frames.tobytes()
    assert from_file.audio is not None and from_folder.audio is not None
    assert np.array_equal(from_file.audio[0].samples, from_folder.audio[0].samples)
    assert from_file.audio[0].rate == 24000 and from_file.audio[0].channels == 2


def test_an_ltx2_file_missing_keys_is_refused_naming_them(tmp_path: Path) -> None:
    build_tiny(get_model("ltx2-tiny"), tmp_path / "base")
    whole = write_ltx2_single_file(tmp_path / "whole.safetensors")
    dropped = PREFIX + "audio_patchify_proj.weight"
    with safe_open(str(whole), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys() if key != dropped}  # noqa: SIM118
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(
        SingleFileRefused, match=r"partial.safetensors .* lacks 1 key\(s\): audio_proj_in.weight"
    ):
        load_transformer(
            get_model("ltx2-tiny"), tmp_path / "partial.safetensors", torch.float32, tmp_path / "base"
        )
