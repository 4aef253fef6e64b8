"""A run killed after a checkpoint and resumed by another host (a fresh load of the same weights, as
another agent would) gives the same output, byte for byte, as the run that was never stopped: for
every tiny model family, with multistep solvers (UniPC keeps model outputs across steps), two
scheduler instances (LTX-2's audio), two render stages (LTX-2's distilled refine) and both experts
(Wan 2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.catalogue import get_model
from models.checkpoint import StepState
from models.loras import LoraLibrary, family_folder
from models.progress import Phase, Progress
from models.runner import GenerationOutput, PipelineHost
from models.settings import Attachments, parse_settings, resolve
from models.tiny_ltx2 import write_distilled_lora
from models.weights import WeightCache
from processing.image import save_png
from tests.integration.farm_helpers import tiny
from tests.torch_threads import one_torch_thread

# The families of tests/integration/test_farm_placement.py's batch, the image-to-video variants,
# and the solvers and stages whose state lies outside the latents.
CASES: dict[str, dict[str, Any]] = {
    "wan-unipc": {"model_type": "wan-tiny", "sample_solver": "unipc"},
    "wan-dpm++": {"model_type": "wan-tiny", "sample_solver": "dpm++"},
    "ltx": {"model_type": "ltx-tiny"},
    "flux": {"model_type": "flux-tiny"},
    "qwen-image": {"model_type": "qwen-image-tiny"},
    "flux-kontext": {"model_type": "flux-kontext-tiny", "image_refs": "start.png"},
    "flux2-klein": {"model_type": "flux2-klein-tiny"},
    "wan-vace": {"model_type": "wan-vace-tiny"},
    "hunyuan15": {"model_type": "hunyuan15-tiny"},
    "ltx2": {"model_type": "ltx2-tiny"},
    "ltx2-two-stages": {"model_type": "ltx2-tiny", "guidance_phases": 2, "resolution": "128x64"},
    "stable-audio3": {"model_type": "stable-audio3-tiny"},
    "ace-step": {"model_type": "ace-step-tiny", "num_inference_steps": 8},  # its only schedule
    "z-image": {"model_type": "z-image-tiny"},
    "k5": {"model_type": "k5-tiny"},
    "krea2": {"model_type": "krea2-tiny"},
    "ideogram4": {"model_type": "ideogram4-tiny"},
    "chroma": {"model_type": "chroma-tiny"},
    "wan-i2v": {"model_type": "wan-i2v-tiny", "image_start": "start.png"},
    "hunyuan-i2v": {"model_type": "hunyuan-i2v-tiny", "image_start": "start.png"},
    "k5-i2v": {"model_type": "k5-i2v-tiny", "image_start": "start.png", "video_length": 17},
    "hunyuan15-i2v": {"model_type": "hunyuan15-i2v-tiny", "image_start": "start.png"},
}
STEPS = 4
KILLED_AT = 2  # steps done when the first run dies, a checkpoint saved at each boundary before


class Killed(Exception):
    """The agent died (the run stops wherever it is)."""


@dataclass
class SavedInMemory:
    """Checkpoints of one generation, each read back from its bytes as object storage would."""

    fingerprint: str
    saved: list[StepState] = field(default_factory=list)
    bytes_written: int = 0

    def resume(self) -> StepState | None:
        return self.saved[-1] if self.saved else None

    def due(self, step: int, total: int) -> bool:
        return True

    def save(self, state: StepState) -> None:
        data = state.encode()
        self.bytes_written += len(data)
        self.saved.append(StepState.decode(data))


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> LoraLibrary:
    """LTX-2's distilled LoRA, which refines its second stage."""
    root = tmp_path_factory.mktemp("loras")
    folder = root / family_folder(get_model("ltx2-tiny"))
    folder.mkdir()
    write_distilled_lora(folder)
    return LoraLibrary(root)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    picture = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    save_png(picture, folder / "start.png", {})
    return folder


def _render(
    cache: WeightCache,
    loras: LoraLibrary,
    inputs: Path,
    settings: dict[str, Any],
    checkpoints: SavedInMemory | None = None,
    killed_at: int | None = None,
) -> GenerationOutput:
    job = resolve(parse_settings(tiny(**settings)), Attachments.inside(inputs), "job")
    request = job.generations[0].request

    def on_progress(progress: Progress) -> None:
        if progress.phase is Phase.DENOISING and progress.step == killed_at:
            raise Killed

    # A host of its own each time: the resume loads the weights afresh, as another agent would.
    host = PipelineHost(cache, device="cpu", loras=loras)
    return host.generate(job.preset, request, on_progress=on_progress, checkpoints=checkpoints)


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumed_from_its_checkpoint_gives_the_same_bytes(
    case: str, weight_cache: WeightCache, loras: LoraLibrary, inputs: Path
) -> None:
    with one_torch_thread():
        _killed_and_resumed(case, weight_cache, loras, inputs)


def _killed_and_resumed(case: str, weight_cache: WeightCache, loras: LoraLibrary, inputs: Path) -> None:
    settings = {"num_inference_steps": STEPS, "seed": 5} | CASES[case]
    whole = _render(weight_cache, loras, inputs, settings)
    saved = SavedInMemory(fingerprint=case)
    with pytest.raises(Killed):
        _render(weight_cache, loras, inputs, settings, saved, killed_at=KILLED_AT)
    assert [state.step for state in saved.saved] == list(range(1, KILLED_AT + 1))
    resumed = _render(weight_cache, loras, inputs, settings, SavedInMemory(case, saved.saved[-1:]))
    assert resumed.info.resumed_from == KILLED_AT
    assert whole.info.resumed_from == 0
    assert resumed.frames.shape == whole.frames.shape
    assert resumed.frames.tobytes() == whole.frames.tobytes()
    if whole.audio is not None:
        assert resumed.audio is not None
        for mine, theirs in zip(resumed.audio, whole.audio, strict=True):
            assert np.array_equal(mine.samples, theirs.samples)
