"""A WanGP definition whose transformer file is prequantized (NVFP4, GGUF, scaled FP8, NF4; as
Wan2GP 8681e9f7 shared/qtypes/ reads them) renders through `wanfarm render`: the file is fetched over
HTTP beside its base's folder, dequantized at load (models.prequantized), and renders exactly what
the dequantized weights render when loaded into the diffusers model directly, the file named in the
output's metadata."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from controller.cli import main
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.runner import PipelineHost
from models.single_file import diffusers_names
from models.tiny import build_tiny, write_wan_single_file
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests import prequantized_files as quant
from tests.served_definitions import definitions_folder, served_file
from tests.tiny_requests import tiny_wan_request
from tests.torch_threads import one_torch_thread

Writer = Callable[[dict[str, torch.Tensor], Path], dict[str, torch.Tensor]]


def _safetensors(quantizer: Callable[[dict[str, torch.Tensor]], quant.Quantized]) -> Writer:
    def write(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
        stored, snapped = quantizer(state)
        save_file({key: tensor.contiguous() for key, tensor in stored.items()}, str(path))
        return snapped

    return write


FILES: dict[str, Writer] = {
    "wan_tiny_nvfp4_lightx2v.safetensors": _safetensors(quant.nvfp4),
    "wan-tiny-Q4_K_M.gguf": lambda state, path: quant.write_gguf(state, path, "model.diffusion_model."),
    "wan_tiny_fp8_e4m3fn_scaled.safetensors": _safetensors(quant.scaled_fp8),
    "wan_tiny_nf4.safetensors": _safetensors(quant.nf4),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def finetune(folder: Path) -> dict[str, torch.Tensor]:
    """The tiny Wan transformer in the original layout, every weight moved a little (seeded)."""
    original = write_wan_single_file(folder / "original.safetensors")
    generator = torch.Generator().manual_seed(11)
    with safe_open(str(original), framework="pt") as handle:
        return {
            key: tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
            for key in handle.keys()  # noqa: SIM118 (a handle, not a dict)
            for tensor in [handle.get_tensor(key)]
        }


@pytest.mark.parametrize("name", list(FILES))
def test_a_prequantized_definition_renders_its_dequantized_weights(
    name: str, models_dir: Path, tmp_path: Path
) -> None:
    state = finetune(tmp_path)
    snapped = FILES[name](state, tmp_path / name)
    assert any(not torch.equal(snapped[key], state[key]) for key in state)  # really quantized
    with served_file(name, (tmp_path / name).read_bytes()) as url:
        definition = {"model": {"name": "Tiny prequantized", "architecture": "wan-tiny", "URLs": [url]}}
        (models_dir / "tiny_prequantized.json").write_text(json.dumps(definition))
        settings = {"model_type": "tiny_prequantized", "prompt": "a fox", "resolution": "64x32"}
        job = tmp_path / "job.json"
        job.write_text(json.dumps(settings | {"video_length": 5, "seed": 5, "num_inference_steps": 3}))
        out, cache = tmp_path / "out", tmp_path / "cache"
        assert main(["render", str(job), "--out", str(out), "--cache", str(cache)]) == 0
    [video] = list(out.glob("*.mp4"))
    assert read_mp4(video).frames.std() > 0
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_filename"] == name

    # The host renders exactly what the dequantized weights render loaded directly.
    preset, request = get_model("tiny_prequantized"), tiny_wan_request()
    output = PipelineHost(WeightCache(cache)).generate(preset, request)
    assert output.info.model_file == name and output.info.weights_source == "disk"
    build_tiny(get_model("wan-tiny"), tmp_path / "wan-tiny")
    direct = diffusers.WanPipeline.from_pretrained(tmp_path / "wan-tiny")
    renames = diffusers_names(list(snapped))
    direct.transformer.load_state_dict({new: snapped[old] for new, old in renames.items()}, strict=True)
    assert output.frames.tobytes() == render_directly(direct, request).tobytes()


def render_directly(pipe: Any, request: Any) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    preset = get_model("wan-tiny")
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    frames = np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).frames)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
