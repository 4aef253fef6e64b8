"""LTX-2's guidance_phases 2 through `wanfarm render`: WanGP's two render stages (Wan2GP 8681e9f7,
models/ltx2/ltx_pipelines/ti2vid_two_stages.py) on the tiny model. The first stage denoises at half
the width and height, its latents go through the x2 latent upsampler, the second stage refines them
at full size with the distilled LoRA; the video has the size and length asked, its soundtrack, and
the settings (guidance_phases 2) and the stage LoRA read back from the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from controller.cli import main
from models.catalogue import get_model
from models.loras import LoraLibrary, family_folder
from models.ltx2_render import StagesCall
from models.ltx2_stages import LTX23_SECOND_STAGE_SIGMAS, SECOND_STAGE_SIGMAS, stage_one_sigmas, two_stages
from models.runner import PipelineHost
from models.settings import parse_settings, resolve
from models.tiny_ltx2 import write_distilled_lora
from models.weights import WeightCache
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.torch_threads import one_torch_thread

PROMPT = "waves on a rocky shore"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loras")
    folder = root / family_folder(get_model("ltx2-tiny"))
    folder.mkdir()
    write_distilled_lora(folder)
    return root


def render(tmp_path: Path, cache_dir: Path, lora_root: Path, **settings: object) -> Path:
    tmp_path.mkdir()
    job = {"model_type": "ltx2-tiny", "prompt": PROMPT, "seed": 5, "resolution": "128x64"} | settings
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = tmp_path / "out"
    argv = ["render", str(tmp_path / "job.json"), "--out", str(out), "--cache", str(cache_dir)]
    assert main([*argv, "--lora-dir", str(lora_root)]) == 0
    [video] = list(out.glob("*.mp4"))
    return video


def test_two_stages_render_the_size_and_length_asked_and_record_them(
    tmp_path: Path, cache_dir: Path, lora_root: Path
) -> None:
    video = render(tmp_path / "two", cache_dir, lora_root, guidance_phases=2, video_length=17)
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height, decoded.fps) == (17, 128, 64, Fraction(24))
    metadata = read_metadata(video)
    assert metadata is not None
    assert metadata["guidance_phases"] == 2 and metadata["resolution"] == "128x64"
    assert metadata["wanfarm"]["audio"]["channels"] == 2
    [lora] = metadata["wanfarm"]["loras"]
    # The distilled LoRA off for the 3 steps of the first stage, on for the 3 refining steps.
    assert lora["name"] == "ltx2-tiny-distilled-lora.safetensors" and lora["multipliers"] == "0;1"
    assert lora["weights"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    one = read_mp4(render(tmp_path / "one", cache_dir, lora_root, guidance_phases=1, video_length=17))
    assert (one.frame_count, one.width, one.height) == (17, 128, 64)
    assert not np.array_equal(one.frames, decoded.frames)  # the second stage is not the one-stage render


def test_ltx2s_guidance_passes_render_in_the_first_stage_and_read_back(
    tmp_path: Path, cache_dir: Path, lora_root: Path
) -> None:
    passes = {
        "audio_guidance_scale": 5.0,
        "alt_guidance_scale": 2.0,
        "alt_scale": 0.5,
        "perturbation_switch": 2,
        "perturbation_layers": [1],
    }
    video = render(tmp_path / "passes", cache_dir, lora_root, guidance_phases=2, video_length=9, **passes)
    metadata = read_metadata(video)
    assert metadata is not None and {key: metadata[key] for key in passes} == passes
    plain = render(tmp_path / "plain", cache_dir, lora_root, guidance_phases=2, video_length=9)
    assert not np.array_equal(read_mp4(video).frames, read_mp4(plain).frames)


def test_the_first_stage_denoises_half_the_canvas_then_the_upsampled_latents(
    tmp_path: Path, cache_dir: Path, lora_root: Path
) -> None:
    settings = {"model_type": "ltx2-tiny", "prompt": PROMPT, "seed": 5, "resolution": "128x64"}
    job = resolve(parse_settings(settings | {"guidance_phases": 2, "video_length": 9}), tmp_path)
    request = job.generations[0].request
    assert request.ltx2_stages is not None
    host = PipelineHost(WeightCache(cache_dir), device="cpu", loras=LoraLibrary(lora_root))
    calls: list[StagesCall] = []
    original = host._stages

    def recorded(*args: object) -> StagesCall:
        call = original(*args)  # type: ignore[arg-type]
        calls.append(call)
        return call

    host._stages = recorded  # type: ignore[method-assign,assignment]
    output = host.generate(job.preset, request)
    assert output.frames.shape == (1, 9, 64, 128, 3)
    # Latents (batch, channels, frames, height, width) at 32 pixels a latent: 64x32, then 128x64.
    assert calls[0].record.shapes == [(1, 8, 2, 1, 2), (1, 8, 2, 2, 4)]


def test_a_plan_follows_wangps_pipelines() -> None:
    dev = two_stages("ltx-2-19b", "euler", 40)
    assert len(dev.first_sigmas) == 40 and dev.first_sigmas[0] == 1.0
    assert dev.first_sigmas[-1] == pytest.approx(0.1)  # stretched to WanGP's terminal
    assert dev.second_sigmas == SECOND_STAGE_SIGMAS and dev.lora_weights == (0.0, 1.0)
    assert dev.lora.endswith("ltx-2-19b-distilled-lora-384.safetensors")
    fast = two_stages("ltx-2.3-22b", "distilled_8_steps", 8)
    assert fast.second_sigmas == LTX23_SECOND_STAGE_SIGMAS and fast.lora_weights == (0.5, 0.5)
    assert fast.lora.endswith("ltx-2.3-22b-distilled-lora-384-1.1.safetensors")
    distilled = two_stages("ltx-2.3-22b", "euler", 8, pipeline="distilled")
    assert distilled.lora == "" and len(distilled.first_sigmas) == 8
    # ltx2_lora_distilled replaces the dev pipeline's LoRA (euler), not distilled_8_steps' 1.1.
    own = "https://x/ltx-2.3-22b-distilled-lora-384-1.1.safetensors"
    assert two_stages("ltx-2.3-22b", "euler", 30, lora=own).lora == own


def test_one_stage_runs_wangps_schedule_at_full_size(tmp_path: Path) -> None:
    settings = {"model_type": "ltx2-tiny", "prompt": PROMPT, "guidance_phases": 1, "num_inference_steps": 5}
    (generation,) = resolve(parse_settings(settings), tmp_path).generations
    plan = generation.request.ltx2_stages
    assert plan is not None and not plan.two and plan.first_sigmas == stage_one_sigmas(5)
    assert generation.metadata["guidance_phases"] == 1


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"resolution": "96x64"}, "resolution: 96x64 is not supported with guidance_phases 2"),
        (
            {"guidance_phases": 1, "sample_solver": "unipc"},
            "sample_solver: 'unipc' is not supported by WanFarm yet on",
        ),
        ({"sample_solver": "unipc"}, "sample_solver: 'unipc' is not supported by WanFarm yet on LTX-2"),
        ({"sample_solver": "distilled_8_steps"}, "a sampler of LTX-2.3 (22B)"),
        (
            {"activated_loras": ["mine.safetensors"]},
            "activated_loras: a job's own LoRAs beside the distilled LoRA of LTX-2's stages",
        ),
    ],
)
def test_what_two_stages_cannot_render_is_refused_by_name(
    settings: dict[str, object], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {"model_type": "ltx2-tiny", "prompt": PROMPT, "guidance_phases": 2, "resolution": "128x64"}
    (tmp_path / "job.json").write_text(json.dumps(job | settings))
    assert main(["render", "--dry-run", str(tmp_path / "job.json")]) == 2
    assert named in capsys.readouterr().err


def test_the_hot_pipeline_has_its_own_scheduler_and_no_lora_after_two_stages(
    tmp_path: Path, cache_dir: Path, lora_root: Path
) -> None:
    settings = {"model_type": "ltx2-tiny", "prompt": PROMPT, "seed": 5, "resolution": "64x64"}
    job = resolve(parse_settings(settings | {"guidance_phases": 2, "video_length": 9}), tmp_path)
    host = PipelineHost(WeightCache(cache_dir), device="cpu", loras=LoraLibrary(lora_root))
    host.generate(job.preset, job.generations[0].request)
    pipe = host._hot.pipe  # type: ignore[union-attr]
    assert pipe.scheduler.config.use_dynamic_shifting is True
    # The stage LoRA was loaded into the transformer and is off again: it computes as without it.
    layer = pipe.transformer.transformer_blocks[0].attn1.to_q
    probe = torch.ones(1, layer.in_features)
    assert torch.equal(layer(probe), layer.base_layer(probe))
