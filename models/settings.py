"""WanGP settings: the typed schema of the keys our models use, and their checks against a model.

A settings object is what WanGP saves (a settings .json, one entry of a queue.zip, or the metadata
embedded in an output). Keys this schema does not know are kept (they travel into the output's
metadata) and reported, never silently dropped. Every problem names the key and the rule.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from models.attachments import SEND_ATTACHMENTS, AttachmentRefused, Attachments
from models.catalogue import ModelPreset, Output, Task, UnknownModel, get_model
from models.request import GenerationRequest
from models.samplers import SOLVER_NAMES, solver_problem
from models.work import WorkSize
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
# Keys WanGP writes into an output's metadata besides the settings: accepted, not reported.
METADATA_KEYS = frozenset(
    {
        "type",
        "settings_version",
        "base_model_type",
        "model_filename",
        "generation_time",
        "creation_date",
        "creation_timestamp",
        "model_id",
        "client_id",
        "wanfarm",
    }
)


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


Int = Annotated[int, BeforeValidator(_json_number)]
Float = Annotated[float, BeforeValidator(_json_number)]


class WanGPSettings(BaseModel):
    """The WanGP settings keys the supported models use; other keys are kept in `model_extra`."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    model_type: str = Field(min_length=1, max_length=MAX_MODEL_TYPE_CHARS)
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    resolution: str | None = None
    video_length: Int | None = Field(default=None, ge=1)
    num_inference_steps: Int | None = Field(default=None, ge=1, le=1000)
    seed: Int = Field(default=-1, ge=-1, le=MAX_SEED)
    guidance_scale: Float | None = Field(default=None, ge=0, le=50)
    flow_shift: Float | None = Field(default=None, gt=0, le=100)
    sample_solver: str | None = None
    batch_size: Int = Field(default=1, ge=1, le=16)
    repeat_generation: Int = Field(default=1, ge=1, le=100)
    activated_loras: list[str] = []
    loras_multipliers: str = Field(default="", max_length=MAX_LORA_TEXT_CHARS)
    image_start: str | list[str] | None = None
    film_grain_intensity: Float = Field(default=0.0, ge=0, le=1)
    film_grain_saturation: Float = Field(default=0.5, ge=0, le=1)
    spatial_upsampling: str = ""

    @field_validator("resolution")
    @classmethod
    def _resolution_is_wxh(cls, value: str | None) -> str | None:
        if value is not None and not RESOLUTION.match(value):
            raise ValueError('must be "WIDTHxHEIGHT" with 1 to 5 ASCII digits a side, e.g. "832x480"')
        return value

    @field_validator("sample_solver")
    @classmethod
    def _known_solver(cls, value: str | None) -> str | None:
        if value is not None and value not in SOLVER_NAMES:
            raise ValueError(f"must be one of {', '.join(SOLVER_NAMES)}")
        return value

    @field_validator("spatial_upsampling")
    @classmethod
    def _known_upsampling(cls, value: str) -> str:
        if value not in UPSAMPLING:
            raise ValueError(f"must be one of {', '.join(repr(k) for k in UPSAMPLING)}")
        return value

    @field_validator("activated_loras")
    @classmethod
    def _no_loras_yet(cls, value: list[str]) -> list[str]:
        if value:
            raise ValueError("LoRAs are not supported by WanFarm yet; remove them to render")
        return value

    def unknown_keys(self) -> list[str]:
        """Keys kept but not understood, for the user to see."""
        return sorted(k for k in (self.model_extra or {}) if k not in METADATA_KEYS)

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


def parse_settings(data: object, source: str = "") -> WanGPSettings:
    """Validate a decoded settings object; SettingsError lists every bad key with its rule."""
    if not isinstance(data, Mapping):
        raise SettingsError([f"a settings object must be a JSON object, got {type(data).__name__}"], source)
    try:
        return WanGPSettings.model_validate(dict(data))
    except ValidationError as error:
        raise SettingsError([_describe(e) for e in error.errors()], source) from None


def resolve(settings: WanGPSettings, attachments: Attachments | Path, source: str = "") -> Job:
    """Check settings against their model and fill WanGP's defaults; seeds -1 become real seeds.

    `attachments` says which files image_start may name; a bare Path is `Attachments.inside(path)`.
    """
    if isinstance(attachments, Path):
        attachments = Attachments.inside(attachments)
    try:
        preset = get_model(settings.model_type)
    except UnknownModel as error:
        raise SettingsError([f"model_type: {error}"], source) from None
    problems: list[str] = []
    width, height = _size(settings, preset, problems)
    frames = _frames(settings, preset, problems)
    image_start = _image_start(settings, preset, attachments, problems)
    solver = settings.sample_solver or preset.defaults.sample_solver
    flow_shift = _or(settings.flow_shift, preset.defaults.flow_shift)
    if sampler := solver_problem(preset.family, preset.id, solver, flow_shift):
        problems.append(f"sample_solver: {sampler}")
    if problems:
        raise SettingsError(problems, source)
    defaults = preset.defaults
    steps = settings.num_inference_steps or defaults.num_inference_steps
    work = WorkSize(preset.id, width, height, frames, steps, settings.batch_size)
    generations = []
    for seed in _seeds(settings.seed, settings.repeat_generation):
        request = GenerationRequest(
            prompt=settings.prompt,
            negative_prompt=settings.negative_prompt,
            width=work.width,
            height=work.height,
            frames=work.frames,
            steps=work.steps,
            guidance_scale=_or(settings.guidance_scale, defaults.guidance_scale),
            flow_shift=flow_shift,
            sample_solver=solver,
            seed=seed,
            batch_size=work.batch,
            image_start=image_start,
        )
        metadata = settings.as_dict() | {
            "model_id": preset.id,
            "resolution": f"{work.width}x{work.height}",
            "video_length": work.frames,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "flow_shift": request.flow_shift,
            "sample_solver": request.sample_solver,
            "seed": seed,
            "repeat_generation": 1,
        }
        generations.append(
            Generation(
                request=request,
                film_grain=(settings.film_grain_intensity, settings.film_grain_saturation),
                upscale=UPSAMPLING[settings.spatial_upsampling],
                metadata=metadata,
            )
        )
    warnings = [f"unknown key kept but not used: {k}" for k in settings.unknown_keys()]
    return Job(preset, settings, work, generations, warnings)


def _seeds(seed: int, repeats: int) -> list[int]:
    # A random seed (-1) is drawn anew for each repeat; a fixed one steps by one, so every repeat
    # differs and each output records the seed that reproduces it.
    if seed < 0:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(repeats)]
    return [(seed + i) % (MAX_SEED + 1) for i in range(repeats)]


def _size(settings: WanGPSettings, preset: ModelPreset, problems: list[str]) -> tuple[int, int]:
    match = RESOLUTION.match(settings.resolution or preset.defaults.resolution)
    assert match is not None  # the validator and the catalogue both hold "WxH"
    width, height = int(match[1]), int(match[2])
    rule = preset.sizes.problem(width, height)
    if rule:
        problems.append(f"resolution: {width}x{height} is not allowed for {preset.id}: {rule}")
    return width, height


def _frames(settings: WanGPSettings, preset: ModelPreset, problems: list[str]) -> int:
    if preset.output is Output.IMAGE or preset.frames is None:
        return 1
    frames = settings.video_length or preset.defaults.video_length
    if not preset.frames.allows(frames):
        problems.append(
            f"video_length: {frames} is not allowed for {preset.id}: must be {preset.frames.describe()}"
        )
    return frames


def _image_start(
    settings: WanGPSettings, preset: ModelPreset, attachments: Attachments, problems: list[str]
) -> Path | None:
    if attachments.folder is None and (named := _named_attachments(settings)):
        # Refused first and never looked up: the answer must not tell whether the file exists.
        problems.extend(f"{key}: {SEND_ATTACHMENTS}" for key in named)
        return None
    value = settings.image_start
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        if preset.task is Task.I2V:
            problems.append(f"image_start: {preset.id} turns an image into a video; give the start image")
        return None
    if preset.task not in (Task.I2V, Task.TI2V):
        problems.append(f"image_start: {preset.id} is {preset.task.value} and takes no start image")
        return None
    try:
        return attachments.locate(value)
    except AttachmentRefused as refused:
        problems.append(f"image_start: {refused}")
        return None


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
