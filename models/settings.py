"""WanGP settings: the typed schema of the keys WanFarm renders, and their checks against a model.

A settings object is what WanGP saves (a settings .json, one entry of a queue.zip, or the metadata
embedded in an output). Every key WanGP writes is classified in models.wangp_keys: applied keys are
typed here and rendered; a key that would change WanGP's output in a way WanFarm cannot follow yet
is refused, naming it; bookkeeping keys are kept. Keys WanGP does not write are kept (they travel
into the output's metadata) and reported. Every problem names the key and the rule.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from models import ace_step_call, ideogram4_call, z_image_control
from models.attachments import SEND_ATTACHMENTS, AttachmentRefused, Attachments
from models.attention import override_attention
from models.audio_call import duration, is_audio, samples
from models.audio_call import solver_problem as audio_solver_problem
from models.catalogue import ModelPreset, Output, Task, UnknownModel, catalogue, get_model
from models.chroma_call import guidance_problem
from models.guides import Guides, read_guides
from models.loras import LoraPhases, LoraRequest, parse_loras
from models.ltx2_stages import DISTILLED_FORCED, DISTILLED_PIPELINE, Guidance, guidance_of, staged
from models.overrides import Overrides, with_plugins
from models.profiles import override_profile
from models.prompts import MODE_KEY, PromptError, prompt_mode, window_commands, window_prompts
from models.request import GenerationRequest
from models.samplers import SOLVER_NAMES, solver_problem, steps_run
from models.song import Song
from models.step_cache import StepCacheRefused, StepCaching, step_caching
from models.vace import guide_problems, takes_guides
from models.vace_letters import implied_letters
from models.wan_offshoots import rendered_frames, settings_problems
from models.wangp_keys import (
    KEYS,
    MODEL_FACTS,
    ExpertPlan,
    KeyClass,
    ModelFacts,
    Reading,
    expert_plan,
    ignored,
    lora_phases,
    model_facts,
    refusals,
    same_value,
)
from models.windows import MAX_WINDOWED_FRAMES, Grid, Window, plan
from models.work import WorkSize
from processing import plugins
from processing.queue_records import ATTACHMENT_KEYS

MAX_SEED = 2**32 - 1
# ASCII digits only (int() would read fullwidth ones), and at most 5 a side: no model renders a
# 100,000-pixel side, and a longer run of digits is not parsed at all (int() refuses 4,301 digits).
RESOLUTION = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")
# Wan's text encoder reads 512 tokens of a prompt, and WanGP's own default prompts are at most about
# 3,600 characters; 16,000 leaves room for WanGP's several-prompts-a-line form while keeping a
# stored job (and a page of them) small.
MAX_PROMPT_CHARS = 16_000
# A multiplier per LoRA, with per-phase values ("1.0;0.5"): even 100 LoRAs stay far under this.
MAX_LORA_TEXT_CHARS = 4_000
MAX_MODEL_TYPE_CHARS = 200
UPSAMPLING = {"": 1.0, "lanczos1.5": 1.5, "lanczos2": 2.0}
# "" and "default" stand for the model's own sampler; WanGP's other names are known, so that they
# are refused as not supported yet rather than as mistyped.
MODEL_SAMPLER = ("", "default")
WANGP_SAMPLERS = tuple(sorted({name for facts in MODEL_FACTS.values() for name in facts.samplers}))
# What each letter of image_prompt_type asks of WanGP, for the ones WanFarm does not render yet.
IMAGE_PROMPT_LETTERS = {
    "E": "an end image, on a model that takes none",
    "V": "continuing a source video",
    "L": "continuing the last video",
}


class SettingsError(ValueError):
    """Invalid settings; `problems` holds one "key: rule" line per problem."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


def _json_number(value: object) -> object:
    # WanGP writes numbers as JSON numbers: "9" or true is a mistake to report, not a 9 or a 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


def _number_or_text(value: object) -> object:
    # WanGP's override_profile is a number (3.5 for "3+"), or "-1" where it was written as text.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


Int = Annotated[int, BeforeValidator(_json_number)]
Float = Annotated[float, BeforeValidator(_json_number)]
NumberOrText = Annotated[int | float | str, BeforeValidator(_number_or_text)]


class WanGPSettings(BaseModel):
    """The keys WanFarm renders, typed; every other key is kept in `model_extra`."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    model_type: str = Field(min_length=1, max_length=MAX_MODEL_TYPE_CHARS)
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    resolution: str | None = None
    # 0: what WanGP writes for its audio models (update_default_settings); a video model refuses it.
    video_length: Int | None = Field(default=None, ge=0)
    num_inference_steps: Int | None = Field(default=None, ge=1, le=1000)
    seed: Int = Field(default=-1, ge=-1, le=MAX_SEED)
    guidance_scale: Float | None = Field(default=None, ge=0, le=50)
    embedded_guidance_scale: Float | None = Field(default=None, ge=0, le=50)
    flow_shift: Float | None = Field(default=None, gt=0, le=100)
    sample_solver: str | None = None
    batch_size: Int = Field(default=1, ge=1, le=16)
    repeat_generation: Int = Field(default=1, ge=1, le=100)
    activated_loras: list[str] = []
    loras_multipliers: str = Field(default="", max_length=MAX_LORA_TEXT_CHARS)
    image_start: str | list[str] | None = None
    image_end: str | list[str] | None = None
    video_guide: str | list[str] | None = None
    video_mask: str | list[str] | None = None
    image_refs: str | list[str] | None = None
    image_prompt_type: str | None = Field(default=None, max_length=8)
    film_grain_intensity: Float = Field(default=0.0, ge=0, le=1)
    film_grain_saturation: Float = Field(default=0.5, ge=0, le=1)
    # Any method's name: an installed post-processor honours it, or it is refused naming the
    # plugin it needs (processing.plugins).
    spatial_upsampling: str = Field(default="", max_length=64)
    override_profile: NumberOrText = -1
    override_attention: str = ""
    skip_steps_cache_type: str = Field(default="", max_length=32)
    skip_steps_multiplier: Float = Field(default=1.75, gt=0, le=100)
    skip_steps_start_step_perc: Int = Field(default=0, ge=0, le=100)
    tea_cache_setting: Float | None = Field(default=None, ge=0, le=100)  # older names (fix_settings)
    tea_cache_start_step_perc: Int | None = Field(default=None, ge=0, le=100)

    @field_validator("resolution")
    @classmethod
    def _resolution_is_wxh(cls, value: str | None) -> str | None:
        if value is not None and not RESOLUTION.match(value):
            raise ValueError('must be "WIDTHxHEIGHT" with 1 to 5 ASCII digits a side, e.g. "832x480"')
        return value

    @field_validator("sample_solver")
    @classmethod
    def _known_solver(cls, value: str | None) -> str | None:
        if value is not None and value not in (*SOLVER_NAMES, *MODEL_SAMPLER, *WANGP_SAMPLERS):
            raise ValueError(f"must be one of {', '.join(SOLVER_NAMES)} ('' or 'default': the model's own)")
        return value

    def given(self) -> dict[str, Any]:
        """The keys the settings object holds, as given (no schema defaults filled in)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def unknown_keys(self) -> list[str]:
        """Keys WanGP does not write, kept but not understood, for the user to see."""
        return sorted(k for k in (self.model_extra or {}) if k not in KEYS)

    def as_dict(self) -> dict[str, Any]:
        """Every key, known and unknown, as WanGP would write it."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Generation:
    """One output to produce: the pipeline request, post-processing, and the metadata to embed."""

    request: GenerationRequest
    film_grain: tuple[float, float]  # (intensity, saturation)
    upscale: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A validated settings object resolved against its model: one Generation per repeat, all of
    the same `work`."""

    preset: ModelPreset
    settings: WanGPSettings
    work: WorkSize
    generations: list[Generation]
    warnings: list[str]
    # WanGP's sliding windows of a long video (models.windows), in order; () for one window.
    windows: tuple[Window, ...] = ()
    # The post-processors (processing.plugins) its settings ask for, in the order they run.
    postprocessors: tuple[str, ...] = ()
    # One prompt per window (multi_prompts_gen_type W or PW); () when every window reads the prompt.
    window_prompts: tuple[str, ...] = ()

    def window_prompt(self, index: int) -> str | None:
        """The prompt window `index` renders, as WanGP picks it (the last for the windows past the
        prompts); None: the generation's own."""
        return self.window_prompts[min(index, len(self.window_prompts) - 1)] if self.window_prompts else None

    @property
    def overrides(self) -> Overrides | None:
        """The profile and attention kernel the job forces (every generation alike); None: none."""
        return self.generations[0].request.overrides


@dataclass(frozen=True)
class _Rendered:
    """What one settings object renders on its model: the applied keys at the values used."""

    canvas: str  # the resolution as WanGP reads it, floored to the model's block
    request: GenerationRequest  # each generation's, but for its seed
    experts: ExpertPlan | None = None  # Wan 2.2's two experts
    windows: tuple[Window, ...] = ()
    window_prompts: tuple[str, ...] = ()


def parse_settings(data: object, source: str = "") -> WanGPSettings:
    """Validate a decoded settings object; SettingsError lists every bad key with its rule."""
    if not isinstance(data, Mapping):
        raise SettingsError([f"a settings object must be a JSON object, got {type(data).__name__}"], source)
    try:
        return WanGPSettings.model_validate(dict(data))
    except ValidationError as error:
        raise SettingsError([_describe(e) for e in error.errors()], source) from None


def resolve(settings: WanGPSettings, attachments: Attachments | Path, source: str = "") -> Job:
    """Check settings against their model as WanGP reads them, fill WanGP's defaults, and refuse
    what WanFarm cannot render as WanGP would; seeds -1 become real seeds.

    `attachments` says which files image_start may name; a bare Path is `Attachments.inside(path)`.
    """
    if isinstance(attachments, Path):
        attachments = Attachments.inside(attachments)
    try:
        preset = get_model(settings.model_type)
    except UnknownModel as error:
        raise SettingsError([f"model_type: {error}"], source) from None
    if preset.wangp_defaults:
        # A WanGP definition's defaults stand in for the keys the file leaves out.
        settings = parse_settings(preset.wangp_defaults | settings.given(), source)
    if preset.family == ideogram4_call.FAMILY:
        # WanGP's Ideogram 4 handler rewrites a file on load: its presets (model_mode), its samplers.
        settings = parse_settings(ideogram4_call.wangp_fixed(settings.given()), source)
    if preset.ltx2_pipeline == DISTILLED_PIPELINE:
        # WanGP's distilled LTX-2 renders these whatever the file says (validate_generative_settings).
        settings = parse_settings(settings.given() | DISTILLED_FORCED, source)
    facts = model_facts(preset.wangp_model_types)
    if preset.family == "ltx2" and not facts.wangp:
        # WanFarm's tiny LTX-2 renders LTX-2's two stages when a job asks for guidance_phases 2.
        facts = replace(
            facts, guidance_phases=2, second_stage="LTX-2's two render stages", guidance_passes=True
        )
    if takes_guides(preset) and not facts.vace:
        # WanFarm's own VACE models (the tiny one) read VACE's letters as WanGP's VACE does.
        facts = replace(facts, vace=True)
    if z_image_control.is_control(preset) and not facts.control_net:
        # WanFarm's tiny control model reads the control image as WanGP's Z-Image ControlNet does.
        facts = replace(facts, control_net=True)
    problems: list[str] = []
    rendered = _rendered(settings, preset, facts, attachments, problems)
    problems.extend(guide_problems(preset, rendered.request))  # a VACE guide shorter than the video
    if preset.family == ideogram4_call.FAMILY:  # its flow shift and custom settings
        problems.extend(ideogram4_call.problems(settings.as_dict(), rendered.request.flow_shift))
    reading = _reading(settings, preset, facts, rendered)
    # A post-processing key is applied only by an installed plugin; else refused naming the plugin.
    asked = plugins.wanted(settings.as_dict(), video=preset.output is Output.VIDEO)
    problems.extend(asked.problems)
    if preset.output is Output.AUDIO:  # post-processors read pictures
        problems.extend(
            f"{key}: {settings.as_dict().get(key)!r} is not supported by WanFarm yet: the "
            f"post-processor {name!r} reads pictures and {preset.id} renders a waveform"
            for name, key in plugins.first_keys(asked.names)
        )
    problems.extend(refusals(reading, handled=asked.keys))
    # Read in the job's guidance phases, which the reading knows (WanGP's lora_multiplier_phases).
    loras = _loras(settings, preset, rendered.request.steps, lora_phases(reading), problems)
    stages, passes = None, None
    if facts.second_stage:  # LTX-2: one render stage, or two (models.ltx2_stages)
        canvas = (rendered.request.width, rendered.request.height)
        solver, steps = rendered.request.sample_solver, rendered.request.steps
        base, own = preset.derived_from or preset.id, (preset.ltx2_pipeline, preset.ltx2_lora_distilled)
        wanted = staged(base, reading.phases, solver, steps, canvas, *own, job_loras=bool(loras))
        problems.extend(wanted.problems)
        stages = wanted.plan
        passes = _ltx2_guidance(settings, preset, facts, reading, rendered.request.guidance_scale, problems)
    if problems:
        raise SettingsError(problems, source)
    # The scheduler places the job only where the plugins not shipped with WanFarm are installed.
    forced = with_plugins(rendered.request.overrides, plugins.non_builtin(asked.names))
    rendered = replace(rendered, request=replace(rendered.request, loras=loras, overrides=forced))
    if stages is not None:
        request = replace(rendered.request, ltx2_stages=stages, ltx2_guidance=passes)
        rendered = replace(rendered, request=request)
    if (experts := expert_plan(reading)) is not None:
        # Where the low-noise expert takes over, and its own scale (WanGP's phase 2 or 3).
        request = replace(
            rendered.request, guidance_scale_2=experts.low_noise_scale, switch_threshold=experts.switch
        )
        rendered = replace(rendered, request=request, experts=experts)
    if preset.family == ideogram4_call.FAMILY:
        # Each guidance phase at its own scale, one CFG weight a step (Ideogram4Pipeline's schedule).
        phased = ideogram4_call.phased_guidance(reading)
        rendered = replace(rendered, request=replace(rendered.request, phased_guidance=phased))
    size = rendered.request
    skip = size.step_caching.skip if size.step_caching else None
    # A long video renders a window at a time: the work placed is its longest window.
    frames = max((window.frames for window in rendered.windows), default=size.frames)
    work = WorkSize(preset.id, size.width, size.height, frames, size.steps, size.batch_size, skip)
    generations = [
        _generation(settings, preset, facts, rendered, seed)
        for seed in _seeds(settings.seed, settings.repeat_generation)
    ]
    warnings = ignored(reading) + _capped_steps(settings, preset, rendered.request)
    warnings += [
        f"unknown key kept but not used: {k}" for k in settings.unknown_keys() if k not in asked.keys
    ]
    warnings += _one_window_prompts(settings, rendered)
    return Job(
        preset,
        settings,
        work,
        generations,
        warnings,
        rendered.windows,
        asked.names,
        window_prompts=rendered.window_prompts,
    )


def _rendered(
    settings: WanGPSettings,
    preset: ModelPreset,
    facts: ModelFacts,
    attachments: Attachments,
    problems: list[str],
) -> _Rendered:
    image_start = _image_start(settings, preset, attachments, problems)
    image_end = _image_end(settings, preset, facts, attachments, image_start, problems)
    guides = (
        read_guides(settings.as_dict(), preset, attachments, list(catalogue().values()), problems)
        if attachments.folder is not None  # else refused already: the files did not come
        else Guides()
    )
    problems.extend(settings_problems(preset, settings.as_dict()))  # models.wan_offshoots: Lucy, SkyReels
    # Z-Image ControlNet: the control image read with V, its weight (models.z_image_control).
    control_image, control_weight = z_image_control.control_inputs(settings.as_dict(), guides.image_guide)
    seconds, song = None, None
    if is_audio(preset):  # a waveform: its samples are the work's width (models.audio_call)
        seconds = duration(settings.as_dict().get("duration_seconds"), preset, problems)
        song = _song(settings, preset, facts, problems)
        canvas, (width, height) = f"{samples(preset, seconds)}x1", (samples(preset, seconds), 1)
    else:
        # WanGP fits the canvas to a control image's aspect ratio as to a start image's.
        canvas, (width, height) = _size(settings, preset, image_start or control_image, problems)
        if settings.as_dict().get("duration_seconds") not in (None, 0) and not facts.audio:
            problems.append(
                f"duration_seconds: {settings.as_dict()['duration_seconds']} is not supported by WanFarm "
                f"yet: the length of an audio output; {preset.id} renders no audio file; accepted: 0"
            )
    flow_shift = _or(settings.flow_shift if facts.flow_shift else None, preset.defaults.flow_shift)
    solver = _solver(settings, preset, facts, problems)
    if is_audio(preset):
        if sampler := audio_solver_problem(preset, solver):
            problems.append(f"sample_solver: {sampler}")
    elif sampler := solver_problem(preset.family, preset.id, solver, flow_shift):
        problems.append(f"sample_solver: {sampler}")
    # WanGP renders one video a call whatever batch_size says (generate_media); WanFarm's own
    # models keep batching videos.
    batch = 1 if facts.wangp and preset.output is Output.VIDEO else settings.batch_size
    steps = steps_run(solver, settings.num_inference_steps or preset.defaults.num_inference_steps)
    frames = _frames(settings, preset, problems)
    request = GenerationRequest(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        width=width,
        height=height,
        frames=frames,
        steps=steps,
        guidance_scale=_guidance(settings, preset, facts),
        flow_shift=flow_shift,
        sample_solver=solver,
        seed=0,  # each generation's own
        batch_size=batch,
        image_start=image_start,
        image_end=image_end,
        video_guide=guides.video_guide,
        video_mask=guides.video_mask,
        image_refs=guides.image_refs,
        image_guide=control_image if facts.control_net else None,
        control_net_weight=control_weight if facts.control_net else None,
        overrides=_overrides(settings, problems),
        step_caching=_step_caching(settings, preset, facts, canvas, steps, problems),
        duration_seconds=seconds,
        song=song,
    )
    problems.extend(guidance_problem(preset, request))  # models.chroma_call: CFG below 1
    windows = _windows(settings, preset, facts, request, problems)
    prompts = _window_prompts(settings, preset, facts, problems)
    if prompts:  # the first window's; the others are the job's (Job.window_prompt)
        request = replace(request, prompt=prompts[0])
    return _Rendered(canvas, request, windows=windows, window_prompts=prompts if len(windows) > 1 else ())


def _window_prompts(
    settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, problems: list[str]
) -> tuple[str, ...]:
    # multi_prompts_gen_type W/PW: one unit a window of one video (models.prompts).
    given = settings.as_dict()
    try:
        units = window_prompts(given)
    except PromptError as error:
        problems.append(str(error))
        return ()
    windowed = facts.sliding_window or preset.windows is not None
    if windowed and (commands := window_commands(settings.prompt)):
        problems.append(
            f"prompt: window commands ({', '.join(commands[:3])}) are not supported by WanFarm yet: they "
            "reshape the sliding windows; give each window its line or paragraph without them"
        )
    if len(units) > 1 and not windowed:
        mode = prompt_mode(given.get(MODE_KEY))
        problems.append(
            f"{MODE_KEY}: {given.get(MODE_KEY)!r} ({mode.meaning}) makes the prompt's {len(units)} "
            f"{mode.unit}s windows of one video, but {preset.id} renders no sliding windows; use 'G' "
            f"for one video per {mode.unit}"
            + ("" if mode.paragraphs else ", 'PG' for one per paragraph")
            + ", or 'FG' for the whole text as one prompt"
        )
        return ()
    return tuple(units) if len(units) > 1 else ()


def _one_window_prompts(settings: WanGPSettings, rendered: _Rendered) -> list[str]:
    # WanGP renders a video of one window with the first unit and no other: said, not silent.
    if rendered.request.prompt == settings.prompt or rendered.window_prompts:
        return []
    count = len(window_prompts(settings.as_dict()))
    return [
        f"prompt: {count} prompts for sliding windows, but the video is one window: only the first is "
        "rendered (as WanGP does); give a longer video_length for more windows"
    ]


def _song(
    settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, problems: list[str]
) -> Song | None:
    # ACE-Step reads the prompt as lyrics, alt_prompt as its caption (the model's own when left
    # out) and custom_settings as the song's metadata (models.ace_step_call).
    if not ace_step_call.is_ace_step(preset):
        return None
    given = settings.as_dict()
    problems.extend(ace_step_call.problems(settings.prompt, given, preset))
    caption = facts.factory.get("alt_prompt", "")
    return ace_step_call.song(settings.prompt, given, caption if isinstance(caption, str) else "", problems)


def _windows(
    settings: WanGPSettings,
    preset: ModelPreset,
    facts: ModelFacts,
    request: GenerationRequest,
    problems: list[str],
) -> tuple[Window, ...]:
    # WanGP renders a video longer than its floored window size as sliding windows (its
    # generate_video, with shared/utils/frame_scheduler.py's plan).
    rule, frames = preset.windows, request.frames
    if preset.frames is None or not (facts.sliding_window or rule is not None):
        return ()
    size = _wangp_number(settings, facts, "sliding_window_size")
    grid = Grid(preset.frames.min, preset.frames.step, preset.frames.offset)
    longest = preset.frames.max  # what the model renders in one call
    if size <= 0 or frames <= grid.down(int(size)):
        if rule is not None and frames > longest:
            problems.append(
                f"video_length: {frames} frames are more than {preset.id} renders at once ({longest}); "
                f"give sliding_window_size at most {longest} to render them in windows"
            )
        return ()
    size = grid.down(int(size))
    if rule is not None and size > longest:
        problems.append(f"sliding_window_size: {size} is more than {preset.id} renders at once ({longest})")
        return ()
    if rule is None:
        count = len(plan(frames, size, 1, 0, grid))
        takers = ", ".join(p.id for p in catalogue().values() if p.windows is not None and not p.tiny)
        problems.append(
            f"sliding_window_size: {frames} frames in windows of {size} are {count} sliding windows, "
            f"which WanFarm renders only on {takers} yet; give video_length at most {size}"
        )
        return ()
    given_overlap = settings.as_dict().get("sliding_window_overlap")
    # Left out, WanGP's default for the model (1 on those that continue from the last frame).
    overlap = (
        _wangp_number(settings, facts, "sliding_window_overlap")
        if given_overlap is not None or facts.wangp
        else rule.overlap
    )
    if overlap != rule.overlap:
        problems.append(
            f"sliding_window_overlap: {overlap:g} is not what {preset.id} renders: its windows share "
            f"{rule.overlap} frame (the last frame of the video so far starts the next window)"
        )
    if request.image_end is not None:
        problems.append("image_end: an end image with sliding windows is not supported by WanFarm yet")
    for key, value in (("repeat_generation", settings.repeat_generation), ("batch_size", request.batch_size)):
        if value > 1:  # each window continues one video
            problems.append(f"{key}: a long video in sliding windows renders one video at a time; give 1")
    discard = int(_wangp_number(settings, facts, "sliding_window_discard_last_frames"))
    if discard < 0 or discard >= size - rule.overlap:
        problems.append(f"sliding_window_discard_last_frames: {discard} must be between 0 and {size - 2}")
        return ()
    return plan(frames, size, rule.overlap, discard, grid)


def _wangp_number(settings: WanGPSettings, facts: ModelFacts, key: str) -> float:
    # The value WanGP uses: the file's, else the model's default, else WanGP's own.
    value = settings.as_dict().get(key)
    if value is None:
        value = facts.factory.get(key, KEYS[key].default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError([f"{key}: must be a number, not {type(value).__name__}"])
    return float(value)


def _step_caching(
    settings: WanGPSettings,
    preset: ModelPreset,
    facts: ModelFacts,
    canvas: str,
    steps: int,
    problems: list[str],
) -> StepCaching | None:
    # WanGP picks some models' figures by the canvas's pixel count (its `resolution`).
    width, height = canvas.split("x")
    try:
        return step_caching(
            settings.skip_steps_cache_type,
            settings.skip_steps_multiplier,
            settings.skip_steps_start_step_perc,
            model=preset.wangp_model_types[0] if facts.wangp else preset.id,
            offered=facts.step_caches if facts.wangp else None,
            pixels=int(width) * int(height),
            steps=steps,
            legacy_tea=settings.tea_cache_setting,
            legacy_start=settings.tea_cache_start_step_perc,
        )
    except StepCacheRefused as refused:
        problems.append(f"{refused.key}: {refused}")
        return None


def _overrides(settings: WanGPSettings, problems: list[str]) -> Overrides | None:
    profile = attention = None
    try:
        profile = override_profile(settings.override_profile)
    except ValueError as error:
        problems.append(f"override_profile: {error}")
    try:
        attention = override_attention(settings.override_attention)
    except ValueError as error:
        problems.append(f"override_attention: {error}")
    return Overrides.of(profile, attention)


def _loras(
    settings: WanGPSettings, preset: ModelPreset, steps: int, phases: LoraPhases, problems: list[str]
) -> tuple[LoraRequest, ...]:
    # The files are found where the job renders (the node's LoRA folder); here, the schedule. A
    # WanGP definition's own LoRAs come first, in the same phases (WanGP's merged schedules).
    try:
        builtin = parse_loras(preset.builtin_loras, " ".join(preset.builtin_lora_multipliers), steps, phases)
    except ValueError as error:
        problems.append(f"{preset.id}: its built-in LoRAs: {error}")
        return ()
    try:
        return builtin + parse_loras(settings.activated_loras, settings.loras_multipliers, steps, phases)
    except ValueError as error:
        message = str(error)
        problems.append(
            message
            if message.startswith(("loras_multipliers", "activated_loras"))
            else f"activated_loras: {message}"
        )
        return ()


def _reading(settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, rendered: _Rendered) -> Reading:
    frame_rule = preset.frames
    return Reading(
        model_type=settings.model_type,
        facts=facts,
        given=settings.given(),
        # The guidance of phase 1, which the later phases' scales are compared to.
        applied={"video_length": rendered.request.frames}
        | ({} if facts.embedded_guidance else {"guidance_scale": rendered.request.guidance_scale}),
        video=preset.output is Output.VIDEO,
        fps=preset.fps,
        frame_step=frame_rule.step if frame_rule else 1,
        frame_offset=frame_rule.offset if frame_rule else 0,
    )


def _generation(
    settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, rendered: _Rendered, seed: int
) -> Generation:
    return Generation(
        request=replace(rendered.request, seed=seed),
        film_grain=(settings.film_grain_intensity, settings.film_grain_saturation),
        upscale=UPSAMPLING.get(settings.spatial_upsampling, 1.0),  # a plugin's own factor: its record
        metadata=_metadata(settings, preset, facts, rendered, seed),
    )


def _metadata(
    settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, rendered: _Rendered, seed: int
) -> dict[str, Any]:
    """What was rendered, in WanGP's format: the applied keys at the values used (dropped where
    WanGP drops them as doing nothing); the other keys WanGP writes as given where they differ
    from WanGP's default for the model (each does nothing, or it was refused); unknown keys."""
    given = settings.given()
    request = rendered.request
    kept = {key: value for key, value in given.items() if _carried(key, value, facts)}
    applied: dict[str, Any] = {
        "model_type": settings.model_type,
        "model_id": preset.id,
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "resolution": rendered.canvas,
        "num_inference_steps": request.steps,
        "seed": seed,
        "sample_solver": request.sample_solver,
        "flow_shift": request.flow_shift,
        "repeat_generation": 1,
        # Already one job per prompt unit, or one window per unit (models.prompts), as WanGP reads it.
        "multi_prompts_gen_type": given.get("multi_prompts_gen_type"),
    }
    if preset.output is Output.VIDEO:
        applied["video_length"] = request.frames
    if len(rendered.windows) > 1:  # the windows it was rendered in, as WanGP records them
        first, second = rendered.windows[:2]
        applied |= {
            "sliding_window_size": first.frames,
            "sliding_window_overlap": second.overlap,
            "sliding_window_discard_last_frames": first.discard,
        }
    if request.duration_seconds is not None:  # an audio model's length; it has no picture size
        applied |= {"resolution": None, "duration_seconds": request.duration_seconds}
    if preset.output is Output.IMAGE or not facts.wangp:
        applied["batch_size"] = request.batch_size
    applied[_guidance_key(facts)] = request.guidance_scale
    if rendered.experts is not None and rendered.experts.scale_key is not None:
        applied[rendered.experts.scale_key] = request.guidance_scale_2
    if facts.second_stage:
        # The render stages (LTX-2): read back without it, WanGP's default would be its two.
        applied["guidance_phases"] = 2 if request.ltx2_stages is not None and request.ltx2_stages.two else 1
    if request.image_start is not None:
        letters = "SE" if request.image_end is not None else "S"
        applied |= {"image_start": given["image_start"], "image_prompt_type": letters}
    if request.image_end is not None:
        applied["image_end"] = given["image_end"]  # as written: WanGP's file name (or list of one)
    elif settings.image_prompt_type:
        applied["image_prompt_type"] = settings.image_prompt_type
    for key, used in (
        ("video_guide", request.video_guide),
        ("video_mask", request.video_mask),
        ("image_refs", request.image_refs),
    ):
        if used:
            applied[key] = given[key]  # as written: WanGP's file names
    if request.control_net_weight is not None:  # Z-Image ControlNet: its weight and control image
        applied["control_net_weight"] = request.control_net_weight
        if request.image_guide is not None:
            applied |= {"image_guide": given["image_guide"], "video_prompt_type": "V"}
    if takes_guides(preset) and (request.video_guide or request.image_refs):
        # WanGP reads a guide only with its letter: the letters of the guides used.
        applied["video_prompt_type"] = implied_letters(given.get("video_prompt_type"), given.get)
    if settings.film_grain_intensity > 0:
        applied |= {
            "film_grain_intensity": settings.film_grain_intensity,
            "film_grain_saturation": settings.film_grain_saturation,
        }
    if settings.spatial_upsampling:
        applied["spatial_upsampling"] = settings.spatial_upsampling
    if settings.activated_loras:
        applied |= {
            "activated_loras": settings.activated_loras,
            "loras_multipliers": settings.loras_multipliers,
        }
    if request.step_caching is not None:
        skip = request.step_caching.skip
        applied |= {
            "skip_steps_cache_type": skip.kind.value,
            "skip_steps_multiplier": skip.multiplier,
            "skip_steps_start_step_perc": skip.start_perc,
        }
    if request.overrides is not None:
        # As given; the output's wanfarm record says which profile and kernels really ran.
        forced = request.overrides
        if forced.profile is not None:
            applied["override_profile"] = given["override_profile"]
        if forced.attention is not None:
            applied["override_attention"] = given["override_attention"]
    return kept | {key: value for key, value in applied.items() if value not in (None, "")}


def _ltx2_guidance(
    settings: WanGPSettings,
    preset: ModelPreset,
    facts: ModelFacts,
    reading: Reading,
    guidance_scale: float,
    problems: list[str],
) -> Guidance:
    # LTX-2's guidance passes as WanGP reads them: its defaults for the model, or on WanFarm's own
    # tiny model the keys given. The distilled pipeline runs none (its stages denoise unguided).
    if preset.ltx2_pipeline == DISTILLED_PIPELINE:
        return Guidance(audio_scale=1.0)
    given = settings.given()
    passes, wrong = guidance_of(reading.get if facts.wangp else given.get, guidance_scale)
    problems.extend(wrong)
    return passes


def _carried(key: str, value: object, facts: ModelFacts) -> bool:
    # Applied keys are written from what was used; keys about WanGP's own run (its file, codec,
    # timing) would claim what did not happen here; a key at WanGP's default for the model reads
    # the same when left out.
    row = KEYS.get(key)
    if row is None:
        return True
    if row.kind is KeyClass.APPLIED or row.of_the_run:
        return False
    return value is not None and not same_value(value, facts.factory.get(key, row.default))


def _guidance_key(facts: ModelFacts) -> str:
    return "embedded_guidance_scale" if facts.embedded_guidance else "guidance_scale"


def _guidance(settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts) -> float:
    # FLUX dev and HunyuanVideo take their (distilled) guidance from embedded_guidance_scale; LTX
    # and FLUX schnell read no guidance setting in WanGP: both keep the model's own.
    if facts.embedded_guidance:
        value = settings.embedded_guidance_scale
    elif facts.wangp and facts.guidance_phases == 0:
        value = None
    else:
        value = settings.guidance_scale
    return float(_or(value, preset.defaults.guidance_scale))


def _solver(settings: WanGPSettings, preset: ModelPreset, facts: ModelFacts, problems: list[str]) -> str:
    value = settings.sample_solver
    if value is None or value in MODEL_SAMPLER:
        return preset.defaults.sample_solver
    if value not in SOLVER_NAMES and not is_audio(preset):  # audio samplers: models.audio_call
        problems.append(
            f"sample_solver: {value!r} is not supported by WanFarm yet: a sampler of WanGP's; "
            f"accepted: {', '.join(SOLVER_NAMES)}, or '' / 'default' for the model's own"
        )
    return value


def _capped_steps(settings: WanGPSettings, preset: ModelPreset, request: GenerationRequest) -> list[str]:
    asked = settings.num_inference_steps or preset.defaults.num_inference_steps
    if request.steps == asked:
        return []
    return [
        f"num_inference_steps: {asked} runs as {request.steps} steps, as in WanGP: its "
        f"{request.sample_solver!r} sampler runs at most {request.steps}"
    ]


def _seeds(seed: int, repeats: int) -> list[int]:
    # A random seed (-1) is drawn anew for each repeat; a fixed one steps by one, so every repeat
    # differs and each output records the seed that reproduces it.
    if seed < 0:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(repeats)]
    return [(seed + i) % (MAX_SEED + 1) for i in range(repeats)]


def _size(
    settings: WanGPSettings, preset: ModelPreset, image: Path | None, problems: list[str]
) -> tuple[str, tuple[int, int]]:
    """The canvas as WanGP reads the resolution, and the size rendered: the canvas, or with a
    start image that image's aspect ratio at the canvas's pixel count."""
    requested = settings.resolution or preset.defaults.resolution
    match = RESOLUTION.match(requested)
    assert match is not None  # the validator and the catalogue both hold "WxH"
    canvas = preset.sizes.floor(int(match[1]), int(match[2]))
    size = canvas
    image_size = _image_size(image) if image is not None and canvas[0] and canvas[1] else None
    if image_size is not None:
        size = preset.sizes.fit(canvas, image_size)
    if rule := preset.sizes.problem(*size):
        rendered = _as_rendered(requested, size, image_size)
        problems.append(f"resolution: {requested}{rendered} is not allowed for {preset.id}: {rule}")
    return f"{canvas[0]}x{canvas[1]}", size


def _as_rendered(requested: str, size: tuple[int, int], image_size: tuple[int, int] | None) -> str:
    rendered = f"{size[0]}x{size[1]}"
    if image_size is not None:
        return f" (rendered {rendered} for a {image_size[0]}x{image_size[1]} start image)"
    return "" if rendered == requested else f" (rendered {rendered} once floored to the model's block)"


def _image_size(path: Path) -> tuple[int, int] | None:
    """The start image's (width, height) from its header; None when it is not an image this reads
    (it is refused when the job renders)."""
    from PIL import Image  # here: only settings with a start image need it

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _frames(settings: WanGPSettings, preset: ModelPreset, problems: list[str]) -> int:
    if preset.output is Output.IMAGE or preset.frames is None:
        return 1
    frames = preset.defaults.video_length if settings.video_length is None else settings.video_length
    rule = preset.frames
    if preset.windows is not None:
        # Past one window, in sliding windows (checked by _windows), up to WanGP's own longest.
        rule = rule.model_copy(update={"max": MAX_WINDOWED_FRAMES})
    if not rule.allows(frames):
        problems.append(f"video_length: {frames} is not allowed for {preset.id}: must be {rule.describe()}")
    return rendered_frames(preset, frames)  # SkyReels DF renders another count (models.wan_offshoots)


def _image_start(
    settings: WanGPSettings, preset: ModelPreset, attachments: Attachments, problems: list[str]
) -> Path | None:
    if attachments.folder is None and (named := _named_attachments(settings)):
        # Refused first and never looked up: the answer must not tell whether the file exists.
        problems.extend(f"{key}: {SEND_ATTACHMENTS}" for key in named)
        return None
    _check_image_prompt_type(settings.image_prompt_type or "", preset, problems)
    value = _one_image("image_start", "start", settings.image_start, problems)
    if not value:
        if preset.task is Task.I2V:
            problems.append(f"image_start: {preset.id} turns an image into a video; give the start image")
        elif preset.task is Task.TI2V and "S" in (settings.image_prompt_type or ""):
            problems.append(
                f"image_start: image_prompt_type {settings.image_prompt_type!r} asks for a start image; "
                "give image_start, or use 'T' to render from text"
            )
        return None
    if preset.task not in (Task.I2V, Task.TI2V):
        problems.append(f"image_start: {preset.id} is {preset.task.value} and takes no start image")
        return None
    try:
        return attachments.locate(value)
    except AttachmentRefused as refused:
        problems.append(f"image_start: {refused}")
        return None


def _image_end(
    settings: WanGPSettings,
    preset: ModelPreset,
    facts: ModelFacts,
    attachments: Attachments,
    start: Path | None,
    problems: list[str],
) -> Path | None:
    # Given, it is used (WanGP's API adds 'E' to image_prompt_type for it); 'E' without one is
    # WanGP's "You must provide an End Image".
    value = _one_image("image_end", "end", settings.image_end, problems)
    if not value:
        if preset.end_image and "E" in (settings.image_prompt_type or ""):
            asked = settings.image_prompt_type
            problems.append(f"image_end: image_prompt_type {asked!r} asks for an end image; give image_end")
        return None
    if not preset.end_image:
        problems.append(f"image_end: {_takes_no_end_image(preset, facts)}")
        return None
    if attachments.folder is None or start is None:
        return None  # refused already: the files did not come, or the start image is missing
    try:
        return attachments.locate(value)
    except AttachmentRefused as refused:
        problems.append(f"image_end: {refused}")
        return None


def _one_image(key: str, what: str, value: str | list[str] | None, problems: list[str]) -> str | None:
    if isinstance(value, list):
        images = [item for item in value if item]
        if len(images) > 1:
            problems.append(
                f"{key}: {len(images)} {what} images are not supported by WanFarm yet: WanGP renders "
                f"one video per {what} image; give one"
            )
        value = images[0] if images else None
    return value or None


def _takes_no_end_image(preset: ModelPreset, facts: ModelFacts) -> str:
    takers = ", ".join(
        f"{p.id} ({', '.join(p.wangp_model_types)})"
        for p in catalogue().values()
        if p.end_image and not p.tiny
    )
    if facts.wangp and facts.end_image:
        # Wan 2.1 I2V: WanGP adds a frame for the end image and gives the image encoder the start
        # image alone; diffusers' last_image call does neither.
        return (
            f"an end image on {preset.id} is not supported by WanFarm yet: WanGP renders it with an "
            f"extra frame and the start image alone for the image encoder; models that take one: {takers}"
        )
    return f"{preset.id} is {preset.task.value} and takes no end image; models that take one: {takers}"


def _check_image_prompt_type(value: str, preset: ModelPreset, problems: list[str]) -> None:
    # T (text only), S (a start image) and, on first-last-frame models, E (an end image) are what
    # WanFarm renders; a start image given with "T" is used, as WanGP's API infers "S" from it
    # (shared/api.py apply_media_flag_defaults).
    accepted = "TSE" if preset.end_image else "TS"
    for letter in value:
        if letter in accepted:
            continue
        what = IMAGE_PROMPT_LETTERS.get(letter, f"the input mode {letter!r}")
        problems.append(
            f"image_prompt_type: {value!r} is not supported by WanFarm yet: {what}; "
            f"accepted: {', '.join(accepted[:-1])} and {accepted[-1]}"
        )
        return


def _named_attachments(settings: WanGPSettings) -> list[str]:
    """The attachment keys that name a file (a non-empty string, or a list holding one)."""
    data = settings.as_dict()
    return [key for key in ATTACHMENT_KEYS if _names_a_file(data.get(key))]


def _names_a_file(value: object) -> bool:
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and item.strip() for item in items)


def _or(value: float | None, default: float | None) -> Any:
    return default if value is None else value


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = 'is required (the WanGP model id, e.g. "t2v")' if key == "model_type" else "is required"
    return f"{key}: {message}"
