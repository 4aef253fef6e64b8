"""Ideogram 4 (WanGP architecture ideogram4, Wan2GP 8681e9f7 models/ideogram4) served by diffusers'
Ideogram4Pipeline: WanGP's definition is the catalogue's ideogram4 with WanGP's defaults (guidance 7
then 3 from noise level 211, the logit-normal schedule's custom settings); its transformer files in
WanGP's key layout (modeling_ideogram4.py: attention q/k/v/o, or a fused qkv) load into the very
weights of the tiny folder, the conditional one from URLs and the unconditional one from URLs2, and
render the same image; the tiny model renders a PNG through `wanfarm render` with its settings in
the metadata; the NF4 definition is served, its two files dequantized at load (models.prequantized)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from controller.cli import main
from models.catalogue import catalogue, get_model
from models.ideogram4_call import PRESETS
from models.ideogram4_layout import PREFIX
from models.phased_guidance import PhasedGuidance
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.settings import SettingsError, parse_settings, resolve
from models.single_file import load_transformer
from models.tiny import build_tiny
from models.tiny_ideogram4 import ideogram4_transformer, ideogram4_unconditional, write_ideogram4_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache
from processing.image import read_png
from processing.metadata import read_metadata
from tests.served_definitions import definitions_folder, served_file
from tests.torch_threads import one_torch_thread

TINY = get_model("ideogram4-tiny")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
COND, UNCOND = "Ideogram4Tiny_Transformer_bf16.safetensors", "Ideogram4Tiny_Unconditional_bf16.safetensors"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def definition(model_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())["definitions"][model_id]
    return data


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("ideogram4-tiny")
    build_tiny(TINY, built)
    return built


@pytest.mark.parametrize(("prefix", "fused"), [("", True), ("", False), (PREFIX, True)])
def test_wangps_layout_loads_into_the_folders_weights(
    prefix: str, fused: bool, folder: Path, tmp_path: Path
) -> None:
    for name, build in (
        ("transformer", ideogram4_transformer),
        ("unconditional_transformer", ideogram4_unconditional),
    ):
        path = write_ideogram4_single_file(tmp_path / f"{name}.safetensors", build(), prefix, fused)
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
        # WanGP's names (modeling_ideogram4.py): attention.q/k/v/o, or qkv as mmgp splits it.
        fused_names = ["layers.0.attention.qkv.weight"] if fused else ["layers.0.attention.q.weight"]
        for key in (*fused_names, "layers.1.attention.o.weight", "llm_cond_proj.weight"):
            assert prefix + key in keys
        assert not any("to_q" in key or "to_out" in key for key in keys)

        loaded = load_transformer(TINY, path, torch.float32, folder, subfolder=name).state_dict()
        expected = build().state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[key], value) for key, value in expected.items())


def test_the_two_transformers_differ_as_the_releases_two_do() -> None:
    cond, uncond = ideogram4_transformer().state_dict(), ideogram4_unconditional().state_dict()
    assert not torch.equal(cond["input_proj.weight"], uncond["input_proj.weight"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Loopback servers holding the tiny transformers as WanGP files (fused qkv); their URLs."""
    cond = write_ideogram4_single_file(tmp_path / COND, fused_qkv=True).read_bytes()
    uncond = write_ideogram4_single_file(tmp_path / UNCOND, ideogram4_unconditional(), fused_qkv=True)
    with served_file(COND, cond) as cond_url, served_file(UNCOND, uncond.read_bytes()) as uncond_url:
        yield cond_url, uncond_url


def test_a_definition_with_its_own_files_renders_the_image_of_the_same_weights(
    served: tuple[str, str], tmp_path: Path
) -> None:
    cond_url, uncond_url = served
    data = {"model": {"architecture": "ideogram4-tiny", "URLs": [cond_url], "URLs2": [uncond_url]}}
    verdict = decide(parse_definition("ideogram4_tiny_files", data), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert own_weights(verdict.preset, 1) == (cond_url,) and own_weights(verdict.preset, 2) == (uncond_url,)
    request = GenerationRequest("a fox in the snow", "", 64, 32, 1, 2, 4.0, 1.0, "euler", 5)
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    from_files = host.generate(verdict.preset, request)
    assert from_files.info.model_file == COND
    from_folder = host.generate(TINY, request)
    assert from_folder.info.model_file == "" and host.loads == 2
    assert np.array_equal(from_files.frames, from_folder.frames)


def test_a_definition_without_its_unconditional_file_is_refused_naming_it(served: tuple[str, str]) -> None:
    data = {"model": {"architecture": "ideogram4-tiny", "URLs": [served[0]]}}
    verdict = decide(parse_definition("ideogram4_half", data), catalogue())
    assert verdict.preset is None and "unconditional_transformer" in verdict.reason


def test_wangps_ideogram4_definition_is_the_catalogues_ideogram4_at_wangps_defaults(tmp_path: Path) -> None:
    data = definition("ideogram4")
    verdict = decide(parse_definition("ideogram4", data), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert verdict.catalogue_own and verdict.preset.pipeline == "Ideogram4Pipeline"
    settings = {k: v for k, v in data.items() if k != "model"} | {"model_type": "ideogram4"}
    (generation,) = resolve(parse_settings(settings), tmp_path).generations
    request = generation.request
    # ideogram4_handler: preset V4_DEFAULT_20 (its model_mode), euler, WanGP's 832x480 canvas.
    assert (request.width, request.height, request.steps, request.sample_solver) == (832, 480, 20, "euler")
    assert request.prompt == data["prompt"]  # a JSON caption, braces and all (skip_prompt_template)
    assert request.phased_guidance == PhasedGuidance((7.0, 3.0), (211.0,), 0.0, 1.75)


def test_the_nf4_definition_is_served_with_both_its_files_dequantized_at_load() -> None:
    # models.prequantized reads bitsandbytes NF4 as WanGP's kernel-less fallback does.
    verdict = decide(parse_definition("ideogram4_nf4", definition("ideogram4_nf4")), catalogue())
    assert verdict.preset is not None, verdict.reason
    assert verdict.preset.wangp_weights[0].endswith("Ideogram4_Transformer_nf4.safetensors")
    assert verdict.preset.wangp_weights2[0].endswith("Ideogram4_Unconditional_Transformer_nf4.safetensors")


def test_turbotime_stays_refused_by_its_architecture_naming_its_lora() -> None:
    # Conditional transformer only, with the TurboTime LoRA merged in: no preset holds that yet.
    verdict = decide(parse_definition("ideogram4_turbotime", definition("ideogram4_turbotime")), catalogue())
    assert verdict.preset is None
    assert verdict.reason.startswith("architecture 'ideogram4_turbotime' is not supported yet: ")
    assert "ideogram_4_turbotime_v1" in verdict.reason


@pytest.mark.parametrize("mode", sorted(PRESETS))
def test_a_model_mode_runs_wangps_preset_with_its_polish_steps(mode: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "model_type": "ideogram4",
        "prompt": "a poster",
        "resolution": "1024x1024",
        "model_mode": mode,
    }
    settings |= {"num_inference_steps": 5, "guidance_scale": 2.0}  # the preset's stand instead
    (generation,) = resolve(parse_settings(settings), tmp_path).generations
    request = generation.request
    assert request.steps == PRESETS[mode]["num_inference_steps"]
    assert request.phased_guidance is not None
    weights = request.phased_guidance.per_step(request.steps, 1024, 1024)
    # WanGP's sampler_configs.PRESETS: 3, 2 and 1 polish steps at 3.0 after 7.0 at 1024x1024.
    polish = {"V4_QUALITY_48": 3, "V4_DEFAULT_20": 2, "V4_TURBO_12": 1}[mode]
    assert weights == [7.0] * (request.steps - polish) + [3.0] * polish


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"flow_shift": 3.0}, "flow_shift"),
        ({"sample_solver": "res_2m"}, "sample_solver"),
        ({"custom_settings": {"ideogram_mu": 0.5, "ideogram_cfg": 2}}, "custom_settings"),
        ({"activated_loras": ["style.safetensors"]}, "activated_loras"),
    ],
)
def test_what_the_pipeline_cannot_honour_is_refused_by_name(
    changes: dict[str, Any], key: str, tmp_path: Path
) -> None:
    settings = {"model_type": "ideogram4", "prompt": "a poster"} | changes
    with pytest.raises(SettingsError) as refused:
        resolve(parse_settings(settings), tmp_path)
    assert {problem.split(":")[0] for problem in refused.value.problems} == {key}


def test_a_definitions_builtin_loras_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"model": {"architecture": "ideogram4-tiny", "URLs": [], "loras": ["turbo.safetensors"]}}
    with definitions_folder(tmp_path / "models", monkeypatch) as models:
        (models / "ideogram4_lora.json").write_text(json.dumps(data))
        with pytest.raises(SettingsError) as refused:
            resolve(parse_settings({"model_type": "ideogram4_lora", "prompt": "a poster"}), tmp_path)
    assert {problem.split(":")[0] for problem in refused.value.problems} == {"loras"}


def test_a_sampler_wangp_does_not_offer_renders_with_euler_as_wangp_does(tmp_path: Path) -> None:
    settings = {"model_type": "ideogram4", "prompt": "a poster", "sample_solver": "unipc"}
    (generation,) = resolve(parse_settings(settings), tmp_path).generations
    assert generation.request.sample_solver == "euler"


def test_each_guidance_phase_reaches_the_pipeline(folder: Path, tmp_path: Path) -> None:
    host = PipelineHost(WeightCache(tmp_path / "cache"))
    request = GenerationRequest("a fox", "", 64, 64, 1, 4, 7.0, 1.0, "euler", 3)
    one = host.generate(TINY, request).frames
    same = PhasedGuidance((7.0, 7.0), (500.0,), 0.0, 1.75)
    two = PhasedGuidance((7.0, 1.0), (500.0,), 0.0, 1.75)
    assert two.per_step(4, 64, 64)[-1] == 1.0  # the last steps run at phase 2's scale
    assert np.array_equal(host.generate(TINY, _with(request, same)).frames, one)
    assert not np.array_equal(host.generate(TINY, _with(request, two)).frames, one)


def _with(request: GenerationRequest, plan: PhasedGuidance) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, phased_guidance=plan)


def test_the_tiny_ideogram4_renders_a_png_with_its_settings(tmp_path: Path, cache_dir: Path) -> None:
    job = tmp_path / "ideogram4.json"
    caption = json.dumps({"high_level_description": "a red fox", "style": {"medium": "poster"}})
    settings = {
        "model_type": "ideogram4-tiny",
        "prompt": caption,
        "resolution": "64x32",
        "num_inference_steps": 2,
    }
    job.write_text(json.dumps(settings | {"seed": 6}))
    assert main(["render", str(job), "--out", str(tmp_path / "out"), "--cache", str(cache_dir)]) == 0
    [image] = list((tmp_path / "out").glob("*.png"))
    pixels = read_png(image)
    assert pixels.shape == (32, 64, 3) and np.asarray(pixels).std() > 0
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == "ideogram4-tiny" and metadata["seed"] == 6
    assert metadata["prompt"] == caption and metadata["num_inference_steps"] == 2
    assert metadata["guidance_scale"] == TINY.defaults.guidance_scale
