"""LoRAs rendered on the CPU with the tiny models: what a multiplier does to the frames, schedules
over the steps, both key layouts of each family, a hot pipeline left clean, and misfits refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

from controller.cli import main
from controller.cli.exits import EXIT_INVALID, EXIT_OK
from models import runner
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import ModelPreset, Output, get_model
from models.lora_adapters import DENOISERS, LoraRun, PeftAdapters, _mmgp_state_dict, switch_step
from models.loras import LoraError, LoraLibrary, LoraMismatch, LoraNotFound, LoraPhases, parse_loras
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.tiny import tiny_pipeline
from models.tiny_loras import FAMILIES, LoraLayout, save_tiny_lora, tiny_lora
from models.weights import WeightCache
from tests.tiny_requests import lora_request
from tests.two_experts import two_expert_wan

STEPS = 2
TINY = {"wan": "wan-tiny", "flux": "flux-tiny", "ltx": "ltx-tiny", "qwen-image": "qwen-image-tiny"}
TINY_FAMILY = {model: family for family, model in TINY.items()}
FOLDERS = {"wan": "wan", "flux": "flux", "ltx": "ltxv", "qwen-image": "qwen"}


def lora_name(family: str, layout: LoraLayout) -> str:
    return f"tiny-{family}-{layout}.safetensors"


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny family's LoRA in both layouts, each in its family's WanGP folder."""
    root = tmp_path_factory.mktemp("loras")
    for family in FAMILIES:
        for layout in LoraLayout:
            save_tiny_lora(root / FOLDERS[family] / lora_name(family, layout), family, layout)
    return root


@pytest.fixture(scope="module")
def host(weight_cache: WeightCache, lora_root: Path) -> PipelineHost:
    """One host for the module, as an agent keeps one: each test also proves it is left clean."""
    return PipelineHost(weight_cache, loras=LoraLibrary(lora_root))


def request(preset: ModelPreset, loras: Sequence[str] = (), multipliers: str = "") -> GenerationRequest:
    frames = 5 if preset.family == "wan" else 9 if preset.output is Output.VIDEO else 1
    return lora_request(preset, frames, STEPS, loras, multipliers)


def render(host: PipelineHost, model: str, loras: Sequence[str] = (), multipliers: str = "") -> np.ndarray:
    preset = get_model(model)
    return host.generate(preset, request(preset, loras, multipliers)).frames


WAN_LORA = lora_name("wan", LoraLayout.DIFFUSERS)


def test_multiplier_0_renders_the_same_bytes_as_no_lora(host: PipelineHost) -> None:
    assert np.array_equal(render(host, "wan-tiny", [WAN_LORA], "0"), render(host, "wan-tiny"))


def test_multiplier_1_changes_the_frames_and_the_run_records_the_lora(
    host: PipelineHost, lora_root: Path
) -> None:
    preset = get_model("wan-tiny")
    output = host.generate(preset, request(preset, [WAN_LORA], "1"))
    assert not np.array_equal(output.frames, render(host, "wan-tiny"))
    [applied] = output.info.loras
    assert applied.name == WAN_LORA and applied.multipliers == "1" and applied.weights == (1.0, 1.0)
    assert applied.sha256 == LoraLibrary(lora_root).sha256(lora_root / "wan" / WAN_LORA)


def test_a_job_without_lora_after_one_with_renders_as_on_a_fresh_pipeline(
    weight_cache: WeightCache, lora_root: Path
) -> None:
    hot = PipelineHost(weight_cache, loras=LoraLibrary(lora_root))
    render(hot, "wan-tiny", [WAN_LORA, lora_name("wan", LoraLayout.ORIGINAL)], "1.5 0.5")
    after = render(hot, "wan-tiny")
    fresh = render(PipelineHost(weight_cache), "wan-tiny")
    assert hot.loads == 1  # the same hot pipeline served both jobs
    assert np.array_equal(after, fresh)


def test_a_lora_named_again_reuses_the_adapter_loaded_for_it(host: PipelineHost, lora_root: Path) -> None:
    # A copy under another name is the same file: same sha256, same adapter.
    copied = lora_root / "wan" / "copy-of-tiny.safetensors"
    copied.write_bytes((lora_root / "wan" / WAN_LORA).read_bytes())
    first = render(host, "wan-tiny", [WAN_LORA])
    assert host._hot is not None
    adapters = set(host._hot.pipe.transformer.peft_config)
    again = render(host, "wan-tiny", ["copy-of-tiny.safetensors"])
    assert np.array_equal(first, again)
    assert set(host._hot.pipe.transformer.peft_config) == adapters


def test_a_step_schedule_is_applied_as_written(host: PipelineHost, weight_cache: WeightCache) -> None:
    scheduled = render(host, "wan-tiny", [WAN_LORA], "1,0")
    assert not np.array_equal(scheduled, render(host, "wan-tiny", [WAN_LORA], "1"))
    assert not np.array_equal(scheduled, render(host, "wan-tiny", [WAN_LORA], "0"))
    assert np.array_equal(scheduled, _by_hand(weight_cache, host, [1.0, 0.0]))


def _by_hand(weight_cache: WeightCache, host: PipelineHost, weights: list[float]) -> np.ndarray:
    """The tiny Wan rendered straight through diffusers, the LoRA's weight set before each step."""
    preset = get_model("wan-tiny")
    job = request(preset)
    pipe = WanPipeline.from_pretrained(weight_cache.ensure(preset), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert host.loras is not None
    pipe.load_lora_weights(str(host.loras.find(WAN_LORA, preset).path), adapter_name="by_hand")
    pipe.set_adapters(["by_hand"], [weights[0]])

    def next_weight(pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if step + 1 < len(weights):
            pipe.set_adapters(["by_hand"], [weights[step + 1]])
        return tensors

    configure_scheduler(pipe, preset, job)
    kwargs = pipeline_kwargs(pipe, preset, job, torch.Generator().manual_seed(job.seed))
    with torch.inference_mode():
        frames = np.asarray(pipe(**kwargs, callback_on_step_end=next_weight).frames)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


@pytest.mark.parametrize("family", FAMILIES)
def test_both_key_layouts_load_and_render_alike_for_each_tiny_family(host: PipelineHost, family: str) -> None:
    model = TINY[family]
    diffusers_layout = render(host, model, [lora_name(family, LoraLayout.DIFFUSERS)])
    original_layout = render(host, model, [lora_name(family, LoraLayout.ORIGINAL)])
    assert np.array_equal(diffusers_layout, original_layout)
    assert not np.array_equal(diffusers_layout, render(host, model))


@pytest.mark.parametrize(
    ("model", "family", "layout"),
    [
        ("wan-tiny", "flux", LoraLayout.ORIGINAL),
        ("wan-tiny", "ltx", LoraLayout.DIFFUSERS),
        ("flux-tiny", "wan", LoraLayout.ORIGINAL),
        ("qwen-image-tiny", "flux", LoraLayout.DIFFUSERS),  # same attention names, other layers
    ],
)
def test_a_lora_of_another_family_is_refused_naming_it_and_the_model(
    host: PipelineHost, lora_root: Path, model: str, family: str, layout: LoraLayout
) -> None:
    name = f"{family}-{layout}-for-{model}.safetensors"
    save_tiny_lora(lora_root / FOLDERS[TINY_FAMILY[model]] / name, family, layout)
    before = render(host, model)
    with pytest.raises(LoraMismatch, match=f"LoRA '{name}' .*{model}"):
        render(host, model, [name])
    assert np.array_equal(render(host, model), before)  # the refusal left the hot pipeline as it was


def test_a_missing_lora_fails_before_loading_anything(weight_cache: WeightCache, lora_root: Path) -> None:
    fresh = PipelineHost(weight_cache, loras=LoraLibrary(lora_root))
    with pytest.raises(LoraNotFound, match=r"'absent\.safetensors' .*wan-tiny .*searched: .*/wan"):
        render(fresh, "wan-tiny", ["absent.safetensors"])
    assert fresh.loads == 0


def test_a_host_without_lora_folder_refuses_a_job_with_loras(weight_cache: WeightCache) -> None:
    with pytest.raises(LoraError, match=r"no LoRA folder is configured \(--lora-dir\)"):
        render(PipelineHost(weight_cache), "wan-tiny", [WAN_LORA])


def test_a_schedule_parsed_for_other_steps_is_refused(host: PipelineHost) -> None:
    preset = get_model("wan-tiny")
    wrong = replace(request(preset), loras=parse_loras([WAN_LORA], "1", STEPS + 1))
    with pytest.raises(LoraError, match="parsed for 3 steps"):
        host.generate(preset, wrong)


# Two experts (Wan 2.2 A14B's layout): the tiny Wan with a second transformer after a boundary.


def _two_experts() -> Any:
    return two_expert_wan(boundary_ratio=0.9)


TWO_EXPERT_STEPS = 4


def _call(
    pipe: Any, on_step_end: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None
) -> Any:
    with torch.inference_mode():
        return np.asarray(
            pipe(
                prompt="a fox",
                height=64,
                width=64,
                num_frames=5,
                num_inference_steps=TWO_EXPERT_STEPS,
                guidance_scale=1.0,
                generator=torch.Generator().manual_seed(3),
                output_type="np",
                callback_on_step_end=on_step_end,
            ).frames
        )


def _with_run(
    pipe: Any, multipliers: str, lora_root: Path
) -> tuple[np.ndarray, tuple[float, ...], int | None]:
    preset = get_model("wan2.2-t2v-a14b")  # LoRAs in wan/
    # Two guidance phases, the second from where the pipeline's own boundary hands over: below 900
    # (diffusers keeps the high-noise expert at t >= 900), at 899 with these whole-number timesteps.
    requests = parse_loras([WAN_LORA], multipliers, TWO_EXPERT_STEPS, LoraPhases(2, (899.0,)))
    run = LoraRun(
        PeftAdapters(pipe, "two-expert tiny"), pipe, requests, [LoraLibrary(lora_root).find(WAN_LORA, preset)]
    )
    run.start(TWO_EXPERT_STEPS)

    def next_step(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if step + 1 < TWO_EXPERT_STEPS:
            run.before_step(step + 1)
        return tensors

    try:
        frames = _call(pipe, next_step)
    finally:
        run.finish()
    return frames, run.applied()[0].weights, switch_step(pipe, TWO_EXPERT_STEPS)


@pytest.mark.parametrize(("multipliers", "expert"), [("1;0", "transformer"), ("0;1", "transformer_2")])
def test_a_phase_multiplier_acts_on_its_expert_only(lora_root: Path, multipliers: str, expert: str) -> None:
    frames, weights, switch = _with_run(_two_experts(), multipliers, lora_root)
    assert switch is not None and 0 < switch < TWO_EXPERT_STEPS  # both experts run
    high = 1.0 if expert == "transformer" else 0.0
    assert weights == tuple(high if step < switch else 1.0 - high for step in range(TWO_EXPERT_STEPS))
    by_hand = _two_experts()
    by_hand.load_lora_weights(
        tiny_lora("wan", LoraLayout.DIFFUSERS),
        adapter_name="x",
        load_into_transformer_2=expert == "transformer_2",
    )
    assert np.array_equal(frames, _call(by_hand))
    assert not np.array_equal(frames, _call(_two_experts()))


def test_the_converted_state_dict_mmgp_reads_names_the_denoisers_own_layers() -> None:
    # mmgp matches LoRA keys to module names itself; CUDA alone runs it, the conversion runs here.
    for family in FAMILIES:
        pipe = tiny_pipeline(family)
        state = _mmgp_state_dict(type(pipe), tiny_lora(family, LoraLayout.ORIGINAL))
        modules = {name for name, _ in pipe.transformer.named_modules()}
        layers = {key.split(".lora_")[0] for key in state}
        assert layers and layers <= modules, family
    assert DENOISERS == ("transformer", "transformer_2")


def test_wanfarm_render_hands_its_lora_folder_to_the_pipeline_host(
    tmp_path: Path, cache_dir: Path, lora_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libraries: list[LoraLibrary | None] = []

    class Recording(PipelineHost):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            libraries.append(self.loras)

    monkeypatch.setattr(runner, "PipelineHost", Recording)
    monkeypatch.setenv("WANFARM_LORAS", str(lora_root))
    settings = tmp_path / "fox.json"
    settings.write_text(json.dumps({"model_type": "wan-tiny", "prompt": "a fox", "video_length": 5}))
    command = ["render", str(settings), "--cache", str(cache_dir), "--out", str(tmp_path / "out")]
    assert main(command) == EXIT_OK
    assert [library.root if library else None for library in libraries] == [lora_root]


def test_wanfarm_render_refuses_a_lora_dir_that_is_not_a_folder(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "fox.json"
    settings.write_text(json.dumps({"model_type": "wan-tiny", "prompt": "a fox", "video_length": 5}))
    missing = tmp_path / "no-loras-here"
    command = ["render", str(settings), "--cache", str(cache_dir), "--lora-dir", str(missing)]
    assert main([*command, "--out", str(tmp_path / "out")]) == EXIT_INVALID
    assert f"--lora-dir: {missing} is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
