"""Chroma (WanGP architecture flux_chroma, Wan2GP 8681e9f7 models/flux) served by diffusers'
ChromaPipeline: WanGP's transformer files hold the original layout (BFL's blocks, the approximator
as distilled_guidance_layer), which the tiny transformer is written in here; it loads through the
farm's loader into the very weights of the tiny folder and renders the same image. The prompt is
encoded as WanGP's Chroma encodes it (T5 without attention mask, WanGP's default negative prompt),
and the tiny model renders a PNG through `wanfarm render` with its settings in the metadata."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler
from safetensors import safe_open

from controller.cli import main
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import catalogue, get_model
from models.flux_refs import WANGP_NEGATIVE
from models.qwen_layouts import COMFY_PREFIX
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.single_file import load_transformer
from models.tiny import build_tiny
from models.tiny_chroma import chroma_transformer, write_chroma_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from processing.image import read_png
from processing.metadata import read_metadata
from tests.served_definitions import served_file
from tests.torch_threads import one_torch_thread

TINY = get_model("chroma-tiny")
FILE = "flux1-chroma_tiny_bf16.safetensors"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


def request(**changes: object) -> GenerationRequest:
    base = GenerationRequest("a fox in the snow", "", 64, 32, 1, 2, 3.0, None, "euler", 5)
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("chroma-tiny")
    build_tiny(TINY, built)
    return built


@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
def test_the_original_layout_loads_into_the_folders_weights(
    prefix: str, folder: Path, tmp_path: Path
) -> None:
    path = write_chroma_single_file(tmp_path / FILE, prefix=prefix)
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    # The original names (WanGP's models/flux/model.py with chroma=True): fused qkv and linear1,
    # the approximator's in_layer/out_layer and RMSNorm scales.
    for name in (
        "double_blocks.0.img_attn.qkv.weight",
        "single_blocks.0.linear1.weight",
        "distilled_guidance_layer.layers.1.in_layer.weight",
        "distilled_guidance_layer.norms.0.scale",
        "final_layer.linear.weight",
    ):
        assert prefix + name in keys
    assert not any("transformer_blocks" in key for key in keys)

    loaded = load_transformer(TINY, path, torch.float32, folder).state_dict()
    expected = chroma_transformer().state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback server holding the tiny transformer as a WanGP file; its URL."""
    with served_file(FILE, write_chroma_single_file(tmp_path / FILE).read_bytes()) as url:
        yield url


def test_a_definition_with_its_own_file_renders_the_image_of_the_same_weights(
    served: str, tmp_path: Path
) -> None:
    definition = {"model": {"architecture": "chroma-tiny", "URLs": [served]}, "guidance_scale": 2.0}
    verdict = decide(parse_definition("chroma_tiny_file", definition), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert own_weights(verdict.preset) == (served,)
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_file = host.generate(verdict.preset, request())
    assert from_file.info.model_file == FILE
    from_folder = host.generate(TINY, request())
    assert from_folder.info.model_file == "" and host.loads == 2
    assert np.array_equal(from_file.frames, from_folder.frames)


def test_wangps_chroma_definition_is_the_catalogues_chroma1_hd() -> None:
    data = json.loads(FIXTURE.read_text())["definitions"]["flux_chroma"]
    verdict = decide(parse_definition("flux_chroma", data), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert verdict.catalogue_own and verdict.preset.id == "chroma1-hd"
    assert verdict.preset.pipeline == "ChromaPipeline"
    assert verdict.preset.defaults.num_inference_steps == data["num_inference_steps"]
    assert verdict.preset.defaults.guidance_scale == data["guidance_scale"]
    assert verdict.preset.defaults.resolution == data["resolution"]


def test_chroma_radiance_stays_refused_by_its_architecture() -> None:
    # Pixel-space Chroma (no VAE): diffusers 0.42 has no pipeline for it.
    data = json.loads(FIXTURE.read_text())["definitions"]["flux_chroma_radiance"]
    verdict = decide(parse_definition("flux_chroma_radiance", data), catalogue())
    assert verdict.preset is None and "flux_chroma_radiance" in verdict.reason


def test_the_prompt_is_encoded_as_wangp_encodes_it(folder: Path) -> None:
    pipe = ChromaPipeline.from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    kwargs = pipeline_kwargs(pipe, TINY, request(batch_size=2), generator)
    assert kwargs["prompt"] is None and kwargs["negative_prompt"] is None
    ids = pipe.tokenizer(["a fox in the snow"], padding="max_length", max_length=512, return_tensors="pt")
    with torch.inference_mode():
        unmasked = pipe.text_encoder(ids.input_ids)[0]
        masked, _ = pipe._get_t5_prompt_embeds("a fox in the snow")
    # Every one of the 512 tokens is read and attended, padding included, one row per image.
    assert kwargs["prompt_embeds"].shape == (2, 512, 32)
    assert torch.equal(kwargs["prompt_embeds"][1], unmasked[0])
    assert not torch.allclose(unmasked, masked)  # diffusers' own encoding would differ
    assert bool(kwargs["prompt_attention_mask"].all())
    # An empty negative prompt is WanGP's default one.
    negative = pipe.tokenizer([WANGP_NEGATIVE], padding="max_length", max_length=512, return_tensors="pt")
    with torch.inference_mode():
        expected = pipe.text_encoder(negative.input_ids)[0]
    assert torch.equal(kwargs["negative_prompt_embeds"][0], expected[0])
    # Guidance 1 runs one pass: no negative prompt at all.
    assert "negative_prompt_embeds" not in pipeline_kwargs(pipe, TINY, request(guidance_scale=1.0), generator)


def test_the_tiny_chroma_renders_a_png_with_its_settings(tmp_path: Path, cache_dir: Path) -> None:
    job = tmp_path / "chroma.json"
    settings = {
        "model_type": "chroma-tiny",
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
    assert metadata is not None and metadata["model_type"] == "chroma-tiny" and metadata["seed"] == 6
    assert metadata["num_inference_steps"] == 2 and metadata["guidance_scale"] == 3.0


def test_a_guidance_below_1_is_refused_by_a_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WanGP runs CFG at 0.5 (towards the negative prompt); ChromaPipeline would run one pass.
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model_type": "chroma-tiny", "prompt": "a fox", "guidance_scale": 0.5}))
    assert main(["render", "--dry-run", str(job)]) == 2
    assert "job.json: guidance_scale: 0.5 is not supported by WanFarm yet" in capsys.readouterr().err


def wangp_sigmas(steps: int, tokens: int) -> list[float]:
    # WanGP's get_schedule (models/flux/sampling.py): 1 -> 0 in steps, shifted by mu from the tokens.
    mu = 0.5 + (1.15 - 0.5) * (tokens - 256) / (4096 - 256)
    return [
        0.0 if t == 0 else math.exp(mu) / (math.exp(mu) + (1 / t - 1)) for t in np.linspace(1, 0, steps + 1)
    ]


def test_the_sigmas_are_wangps_schedule(folder: Path) -> None:
    pipe = ChromaPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    wanted = request(width=256, height=128, steps=4)
    configure_scheduler(pipe, TINY, wanted)  # as the pipeline host sets the sampler
    kwargs = pipeline_kwargs(pipe, TINY, wanted, torch.Generator().manual_seed(0))
    pipe(**kwargs)
    # 256x128 pixels are 16x8 latent patches of 2x2: 128 image tokens.
    assert np.allclose(pipe.scheduler.sigmas.numpy(), wangp_sigmas(4, 128), atol=1e-6)


def test_a_scheduler_off_wangps_schedule_is_refused(folder: Path) -> None:
    pipe = ChromaPipeline.from_pretrained(folder)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False)
    with pytest.raises(ValueError, match="use_dynamic_shifting False"):
        pipeline_kwargs(pipe, TINY, request(), torch.Generator().manual_seed(0))
