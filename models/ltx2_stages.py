"""LTX-2's two render stages, as WanGP renders them (Wan2GP 8681e9f7: models/ltx2/ltx2_handler.py,
ltx2.py get_loras_transformer, ltx_pipelines/ti2vid_two_stages.py and distilled.py, the sigma
tables of ltx_pipelines/utils/constants.py and the LTX2Scheduler of ltx_core/components/schedulers.py).

guidance_phases 2 renders the video first at half its width and height, upsamples its latents x2
with the model's latent upsampler, then refines them at full size: re-noised to the first sigma of
a short fixed schedule and denoised without CFG. The dev pipeline ("two_stage") runs its first stage
with the job's sampler and guidance and its second with the distilled LoRA; LTX-2.3's
distilled_8_steps sampler runs both stages on the distilled schedule with the LoRA at 0.5; the
distilled checkpoints (ltx2_pipeline "distilled") run both on the distilled schedule, no LoRA.

The plan is pure (no torch): settings build it; models.ltx2_render runs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# WanGP's distilled schedule (8 steps) and its second-stage schedules; 0 ends each.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
SECOND_STAGE_SIGMAS = (0.909375, 0.725, 0.421875)
# LTX-2.3 (the 22B class) starts its refining pass a little lower, after Lightricks' ComfyUI flow.
LTX23_SECOND_STAGE_SIGMAS = (0.85, 0.725, 0.4219)
DISTILLED_STEPS = len(DISTILLED_SIGMAS)
DISTILLED_SAMPLER = "distilled_8_steps"
DISTILLED_PIPELINE = "distilled"  # the ltx2_pipeline model key of WanGP's distilled checkpoints
UPSAMPLER = "latent_upsampler"  # the upsampler's folder beside the pipeline's components
_HUB = "https://huggingface.co/DeepBeepMeep/LTX-2/resolve/main/"


@dataclass(frozen=True)
class Ltx2Model:
    """What the two stages of one LTX-2 base model read: its version and its distilled LoRAs (as
    WanGP names them: a URL whose file a LoRA folder holds, or a file name)."""

    ltx23: bool  # the 22B class: its own second-stage schedule and distilled LoRA 1.1
    distilled_lora: str
    distilled_1_1_lora: str = ""  # LTX-2.3's, which the distilled_8_steps sampler takes
    # The text connectors of its distilled checkpoints (ltx2_pipeline "distilled"), where they are
    # not the folder's (models.ltx2_connectors); "" where both pipelines share the folder's.
    distilled_connectors: str = ""


# By catalogue model (a definition's base): WanGP's _ARCH_SPECS of the handler.
MODELS: dict[str, Ltx2Model] = {
    "ltx-2-19b": Ltx2Model(
        False,
        _HUB + "ltx-2-19b-distilled-lora-384.safetensors",
        distilled_connectors=_HUB + "ltx-2-19b-distilled_embeddings_connector.safetensors",
    ),
    "ltx-2.3-22b": Ltx2Model(
        True,
        _HUB + "ltx-2.3-22b-distilled-lora-384.safetensors",
        _HUB + "ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
    ),
    # The tiny model is LTX-2.0 shaped; its LoRA is written by models.tiny_ltx2. Its distilled
    # pipeline reads the folder's connectors (tests stand a file in for the 19B's).
    "ltx2-tiny": Ltx2Model(False, "ltx2-tiny-distilled-lora.safetensors"),
}


@dataclass(frozen=True)
class StagePlan:
    """One LTX-2 render: each stage's sigmas (without the final 0; no second ones: one stage at
    full size), and the LoRA both stages weight (its WanGP multipliers as written, and the weight
    in each stage)."""

    first_sigmas: tuple[float, ...]
    second_sigmas: tuple[float, ...]
    lora: str = ""  # "" when no LoRA is applied
    multipliers: str = ""
    lora_weights: tuple[float, float] = (0.0, 0.0)

    @property
    def steps(self) -> tuple[int, int]:
        return len(self.first_sigmas), len(self.second_sigmas)

    @property
    def two(self) -> bool:
        return bool(self.second_sigmas)


def one_stage(steps: int) -> StagePlan:
    """WanGP's LTX-2 render with guidance_phases 1 (skip_stage_2): the whole canvas on the first
    stage's schedule, where diffusers' own would shift it by the video's token count."""
    return StagePlan(stage_one_sigmas(steps), ())


def two_stages(base: str, solver: str, steps: int, pipeline: str = "", lora: str = "") -> StagePlan:
    """The plan WanGP runs for guidance_phases 2 on catalogue model `base` with `solver` and
    `steps`; `pipeline` is the definition's ltx2_pipeline, `lora` its ltx2_lora_distilled (which
    replaces the model's distilled LoRA of the euler dev pipeline). KeyError for a model not in MODELS."""
    model = MODELS[base]
    second = LTX23_SECOND_STAGE_SIGMAS if model.ltx23 else SECOND_STAGE_SIGMAS
    if pipeline == DISTILLED_PIPELINE:
        return StagePlan(DISTILLED_SIGMAS, second)
    if solver == DISTILLED_SAMPLER:
        # The 1.1 LoRA whatever ltx2_lora_distilled says: WanGP reads ltx2_lora_distilled_1_1 here.
        return StagePlan(DISTILLED_SIGMAS, second, model.distilled_1_1_lora, "0.5;0.5", (0.5, 0.5))
    return StagePlan(stage_one_sigmas(steps), second, lora or model.distilled_lora, "0;1", (0.0, 1.0))


def stage_one_sigmas(steps: int, terminal: float = 0.1) -> tuple[float, ...]:
    """WanGP's LTX2Scheduler for `steps` steps without a latent: the shift of 4096 tokens (2.05),
    then stretched so that its last sigma before 0 is `terminal`."""
    shift = 2.05
    grid = [1.0 - i / steps for i in range(steps)]  # linspace(1, 0, steps + 1) less its final 0
    shifted = [math.exp(shift) / (math.exp(shift) + (1.0 / s - 1.0)) for s in grid]
    scale = (1.0 - shifted[-1]) / (1.0 - terminal)
    return tuple(1.0 - (1.0 - s) / scale for s in shifted)


def first_stage_size(width: int, height: int) -> tuple[int, int]:
    """The first stage's canvas: half the video's width and height (WanGP's width // 2)."""
    return width // 2, height // 2


# What WanGP's distilled pipeline sets whatever a settings file says (ltx2_handler.py
# validate_generative_settings): 8 steps, no CFG, no modality guidance or rescale.
DISTILLED_FORCED: dict[str, object] = {
    "num_inference_steps": DISTILLED_STEPS,
    "guidance_scale": 1.0,
    "audio_guidance_scale": 1.0,
    "alt_guidance_scale": 1.0,
    "alt_scale": 0.0,
}
# A two-stage canvas halves into the VAE's 32-pixel grid (WanGP's assert_resolution).
SIZE_BLOCK = 64


@dataclass(frozen=True)
class StagedRequest:
    """A request's plan for LTX-2's stages, or the settings' problems with it."""

    plan: StagePlan | None
    problems: tuple[str, ...] = ()


def staged(
    base: str,
    phases: int,
    solver: str,
    steps: int,
    size: tuple[int, int],
    pipeline: str = "",
    lora: str = "",
    job_loras: bool = False,
) -> StagedRequest:
    """The stage plan of an LTX-2 job reading `phases` guidance phases, or a line per setting
    WanFarm cannot render as WanGP would ("key: value is not supported ...")."""
    model = MODELS.get(base)
    problems = []
    distilled = pipeline == DISTILLED_PIPELINE
    if not distilled and solver not in ("euler", DISTILLED_SAMPLER):
        # WanGP's LTX-2 samplers less res2s, which WanFarm lacks.
        problems.append(
            f"sample_solver: {solver!r} is not supported by WanFarm yet on LTX-2; "
            f"accepted: euler, {DISTILLED_SAMPLER}"
        )
    elif not distilled and solver == DISTILLED_SAMPLER and (model is None or not model.distilled_1_1_lora):
        problems.append(f"sample_solver: {solver!r} is not available for {base}: a sampler of LTX-2.3 (22B)")
    if phases >= 2 and model is None:
        problems.append(f"guidance_phases: 2 is not supported by WanFarm yet: {base} has no latent upsampler")
    if phases >= 2 and any(side % SIZE_BLOCK for side in size):
        problems.append(
            f"resolution: {size[0]}x{size[1]} is not supported with guidance_phases 2: both sides must be "
            f"multiples of {SIZE_BLOCK} (the first stage renders half of each)"
        )
    if problems or (model is None and phases >= 2):
        return StagedRequest(None, tuple(problems))
    plan = (
        two_stages(base, solver, steps, pipeline, lora)
        if phases >= 2
        else _one(model, solver, steps, distilled)
    )
    if job_loras and plan.lora:
        return StagedRequest(
            None,
            (
                "activated_loras: a job's own LoRAs beside the distilled LoRA of LTX-2's stages are not "
                "supported by WanFarm yet; accepted: none, or guidance_phases 1 with euler",
            ),
        )
    return StagedRequest(plan)


def _one(model: Ltx2Model | None, solver: str, steps: int, distilled: bool) -> StagePlan:
    # WanGP's skip_stage_2: the distilled checkpoints on their schedule; distilled_8_steps on it
    # with the 1.1 LoRA at 0.5 (get_loras_transformer); euler on LTX2Scheduler's.
    if distilled:
        return StagePlan(DISTILLED_SIGMAS, ())
    if solver == DISTILLED_SAMPLER and model is not None:
        return StagePlan(DISTILLED_SIGMAS, (), model.distilled_1_1_lora, "0.5", (0.5, 0.0))
    return one_stage(steps)


# WanGP's LTX-2 model keys the farm renders (ltx2_handler.py: ltx2_pipeline picks the pipeline,
# ltx2_lora_distilled is the dev pipeline's second-stage LoRA, a finetune's custom URL).
MODEL_KEYS = frozenset({"ltx2_pipeline", "ltx2_lora_distilled"})
PIPELINES = ("two_stage", DISTILLED_PIPELINE)
# The architectures whose definitions may carry them: WanGP's, and the tiny model standing in.
ARCHITECTURES = ("ltx2_19B", "ltx2_22B", "ltx2-tiny")


def model_keys_problem(architecture: str, keys: dict[str, object]) -> str:
    """Why a definition's LTX-2 model keys cannot be rendered as WanGP would ("" when they can)."""
    pipeline = keys.get("ltx2_pipeline", "two_stage")
    if pipeline not in PIPELINES:
        return f"model setting ltx2_pipeline {pipeline!r} is not supported yet; known: {', '.join(PIPELINES)}"
    lora = keys.get("ltx2_lora_distilled", "")
    if not isinstance(lora, str):
        return f"model setting ltx2_lora_distilled {lora!r}: a LoRA's URL or file name is expected"
    # The 19B's distilled checkpoints read text connectors of their own: the pipeline host loads
    # them over the folder's (Ltx2Model.distilled_connectors, models.ltx2_connectors).
    return ""


@dataclass(frozen=True)
class Guidance:
    """LTX-2's guidance passes of the first stage as WanGP reads them (guider_denoising_func):
    the audio's CFG scale, modality guidance (alt_guidance_scale), rescale (alt_scale) and the
    blocks whose self attention its perturbed pass skips (perturbation_switch 2), at scale 1."""

    audio_scale: float
    modality: float = 1.0
    rescale: float = 0.0
    skip_blocks: tuple[int, ...] = ()


def guidance_of(values: Callable[[str], object], guidance_scale: float) -> tuple[Guidance, list[str]]:
    """The guidance passes `values` (a key's value as WanGP reads it) ask for, and a line per
    value WanFarm cannot render as WanGP would."""
    problems = []
    audio = _float(values("audio_guidance_scale"), guidance_scale)
    if audio != 1.0 and guidance_scale <= 1.0:
        # WanGP guides the soundtrack alone; diffusers' call runs CFG for both or for neither.
        problems.append(
            f"audio_guidance_scale: {audio:g} is not supported by WanFarm yet with guidance_scale "
            f"{guidance_scale:g} on LTX-2: CFG on the soundtrack alone; accepted: 1, or guidance over 1"
        )
    switch = _float(values("perturbation_switch"), 0.0)
    blocks: tuple[int, ...] = ()
    if switch == 2:
        layers = values("perturbation_layers")
        blocks = tuple(int(x) for x in layers) if isinstance(layers, list) else ()
        for key, whole in (("perturbation_start_perc", 0.0), ("perturbation_end_perc", 100.0)):
            if (value := _float(values(key), whole)) != whole:
                problems.append(
                    f"{key}: {value:g} is not supported by WanFarm yet: skip-attention guidance over part "
                    f"of the steps; accepted: {whole:g}"
                )
    elif switch != 0:
        problems.append(
            f"perturbation_switch: {switch:g} is not supported by WanFarm yet on LTX-2: WanGP's "
            "skip-layer guidance; accepted: 0, 2 (skip self attention)"
        )
    modality = _float(values("alt_guidance_scale"), 1.0)
    return Guidance(audio, modality, _float(values("alt_scale"), 0.0), blocks), problems


def _float(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
