"""A generation request as the pipeline layer sees it: settings already validated and resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.loras import LoraRequest
from models.ltx2_stages import Guidance, StagePlan
from models.overrides import Overrides
from models.phased_guidance import PhasedGuidance
from models.song import Song
from models.step_cache import StepCaching


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one pipeline call needs; sizes are already checked against the model's rules."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int  # 1 for image models
    steps: int
    guidance_scale: float
    flow_shift: float | None
    sample_solver: str
    seed: int  # the seed actually used (never -1 here)
    batch_size: int = 1
    image_start: Path | None = None  # first frame for image-to-video
    image_end: Path | None = None  # last frame, on models that take one (ModelPreset.end_image)
    # WanGP's guide inputs (models.guides), on models whose preset lists them in `inputs`.
    video_guide: Path | None = None  # a control video
    video_mask: Path | None = None  # its mask
    image_refs: tuple[Path, ...] = ()  # reference images
    # Z-Image ControlNet (models.z_image_control): the control image (WanGP's image_guide, read with
    # V in video_prompt_type) and control_net_weight; None: no control, WanGP's default weight.
    image_guide: Path | None = None
    control_net_weight: float | None = None
    loras: tuple[LoraRequest, ...] = ()  # in activated_loras order, schedules for `steps`
    guidance_scale_2: float | None = None  # Wan 2.2's low-noise expert; None: guidance_scale
    # Wan 2.2: the noise level (0-1000) at and below which the low-noise expert runs (0: never);
    # None: the pipeline's own boundary.
    switch_threshold: float | None = None
    overrides: Overrides | None = None  # the job's own profile / attention kernel; None: the farm's
    step_caching: StepCaching | None = None  # WanGP's step skipping (tea, mag); None: every step
    duration_seconds: float | None = None  # audio models: the waveform's length; None elsewhere
    # LTX-2's guidance_phases 2: the two render stages' plan (models.ltx2_stages); None: one call.
    ltx2_stages: StagePlan | None = None
    ltx2_guidance: Guidance | None = None  # its first stage's guidance passes; None: plain CFG
    # Ideogram 4: WanGP's guidance phases as one CFG weight a step, and its schedule's mean and spread.
    phased_guidance: PhasedGuidance | None = None
    song: Song | None = None  # ACE-Step: the caption and metadata its lyrics (prompt) are sung to
