"""A WanGP definition with a transformer file of its own ($WANFARM_MODELS) renders through
`wanfarm render` from that file, fetched over HTTP into the weight cache beside its base's folder:
frames other than the base's, the same as those weights loaded directly, the file named in the
output's metadata (WanGP's model_filename)."""

from __future__ import annotations

import json
from collections.abc import Iterator
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
from models.tiny import write_wan_single_file
from models.weights import WeightCache, WeightsUnavailable
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.served_definitions import definitions_folder, served_file
from tests.tiny_requests import tiny_wan_request

FILE = "wan_tiny_finetune_mbf16.safetensors"


def perturbed_state(folder: Path) -> dict[str, torch.Tensor]:
    """The tiny Wan transformer in the original layout, every weight moved a little (seeded)."""
    original = write_wan_single_file(folder / "original.safetensors")
    generator = torch.Generator().manual_seed(3)
    with safe_open(str(original), framework="pt") as handle:
        return {
            key: tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
            for key in handle.keys()  # noqa: SIM118 (a handle, not a dict)
            for tensor in [handle.get_tensor(key)]
        }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[str], dict[str, torch.Tensor]]]:
    """A loopback server holding the finetune's file: its URL, the paths asked, its tensors."""
    state = perturbed_state(tmp_path)
    save_file(state, str(tmp_path / FILE))
    asked: list[str] = []
    with served_file(FILE, (tmp_path / FILE).read_bytes(), asked) as url:
        yield url, asked, state


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_a_definition_renders_its_own_single_file_weights(
    served: tuple[str, list[str], dict[str, torch.Tensor]], models_dir: Path, tmp_path: Path
) -> None:
    url, asked, state = served
    definition = {"model": {"name": "Tiny finetune", "architecture": "wan-tiny", "URLs": [url]}}
    (models_dir / "tiny_finetune.json").write_text(json.dumps(definition))
    cache = tmp_path / "cache"
    videos = {}
    for model_type in ("tiny_finetune", "wan-tiny"):
        settings = {"model_type": model_type, "prompt": "a fox", "resolution": "64x32", "video_length": 5}
        job = tmp_path / f"{model_type}.json"
        job.write_text(json.dumps(settings | {"seed": 5, "num_inference_steps": 3}))
        out = tmp_path / f"out-{model_type}"
        assert main(["render", str(job), "--out", str(out), "--cache", str(cache)]) == 0
        [videos[model_type]] = list(out.glob("*.mp4"))
    assert not np.array_equal(read_mp4(videos["tiny_finetune"]).frames, read_mp4(videos["wan-tiny"]).frames)
    metadata = read_metadata(videos["tiny_finetune"])
    assert metadata is not None and metadata["model_filename"] == FILE
    # The finetune, rendered first, fetched its base without the transformer its file replaces.
    assert not list((cache / "wan-tiny~components" / "transformer").glob("*.safetensors"))
    assert metadata["wanfarm"]["model_file"] == FILE and metadata["wanfarm"]["weights_source"] == "download"
    assert "model_filename" not in (read_metadata(videos["wan-tiny"]) or {})
    # The file sits whole in the cache beside the base's folder, fetched once.
    assert (cache / "tiny_finetune" / FILE).stat().st_size == (tmp_path / FILE).stat().st_size
    assert (cache / "wan-tiny" / ".complete").is_file() and asked == [f"/files/{FILE}"]

    # The host renders exactly what those weights render when loaded into the diffusers model directly.
    preset, request = get_model("tiny_finetune"), tiny_wan_request()
    host = PipelineHost(WeightCache(cache))
    output = host.generate(preset, request)
    assert output.info.model_file == FILE and output.info.weights_source == "disk"
    assert asked == [f"/files/{FILE}"]
    direct = diffusers.WanPipeline.from_pretrained(cache / "wan-tiny")
    renames = diffusers_names(list(state))
    direct.transformer.load_state_dict({new: state[old] for new, old in renames.items()}, strict=True)
    assert output.frames.tobytes() == render_directly(direct, request).tobytes()
    base = PipelineHost(WeightCache(cache)).generate(get_model("wan-tiny"), request)
    assert output.frames.tobytes() != base.frames.tobytes()


def test_a_file_that_cannot_be_fetched_is_never_cached(
    served: tuple[str, list[str], dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    url, _, _ = served
    cache = WeightCache(tmp_path / "cache")
    preset = get_model("wan-tiny")
    missing = url.replace(FILE, "gone_mbf16.safetensors")
    with pytest.raises(WeightsUnavailable, match=r"could not fetch .*gone_mbf16.safetensors: HTTPError"):
        cache.ensure(preset, missing)
    assert not cache.is_cached(preset, missing) and cache.cached_ids() == []
    assert [path.name for path in cache.root.iterdir() if not path.name.startswith(".")] == []


def render_directly(pipe: Any, request: Any) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    preset = get_model("wan-tiny")
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    frames = np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).frames)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
