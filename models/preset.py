"""What a model is, as the catalogue's records hold it: family, task, diffusers pipeline, where its
weights live, what it weighs (components with byte sizes and dtypes, for the memory estimator and
the scheduler), which job sizes it accepts and the defaults WanGP would apply. The records alone,
read by every layer; models/catalogue.py holds the registry that fills them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Task(StrEnum):
    T2V = "t2v"
    I2V = "i2v"
    TI2V = "ti2v"
    T2I = "t2i"
    T2A = "t2a"  # text to audio (Output.AUDIO)


class Output(StrEnum):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"  # a waveform, written as a .wav file (models.audio_call, processing.audio)


class Role(StrEnum):
    """What a weight component does; the memory profiles treat each role differently."""

    TRANSFORMER = "transformer"
    TEXT_ENCODER = "text_encoder"
    IMAGE_ENCODER = "image_encoder"
    VAE = "vae"


# WanGP's guide inputs a pipeline may take (ModelPreset.inputs; read by models.guides).
GUIDE_INPUTS = ("video_guide", "video_mask", "image_refs", "image_guide")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "nvfp4": 0.5}


class Component(BaseModel):
    """One weight file set of a pipeline, e.g. the transformer or the text encoder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the diffusers component folder: "transformer", "text_encoder", "vae", ...
    role: Role
    bytes: int = Field(ge=0)  # on disk, in `dtype`
    dtype: str  # key of DTYPE_BYTES
    # Text encoders that mmgp quantizes to int8 under profiles 3-5 (T5, LLaMA, Qwen LLMs).
    quantizable: bool = False
    # A transformer read from a prequantized file (GGUF, NVFP4, scaled fp8, NF4), dequantized at
    # load into the half type (models.prequantized): no profile quantizes it again.
    dequantized: bool = False

    @property
    def params(self) -> float:
        return self.bytes / DTYPE_BYTES[self.dtype]


class FrameRule(BaseModel):
    """Allowed frame counts: `offset + step*k` between `min` and `max` (Wan: 4k+1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=1)
    offset: int = Field(ge=0)
    min: int = Field(ge=1)
    max: int = Field(ge=1)

    def allows(self, frames: int) -> bool:
        return self.min <= frames <= self.max and (frames - self.offset) % self.step == 0

    def describe(self) -> str:
        form = f"{self.step}k+{self.offset}" if self.offset else f"a multiple of {self.step}"
        return f"{form}, between {self.min} and {self.max}"


class WindowRule(BaseModel):
    """How a model continues a video past one window (WanGP's sliding windows, models.windows):
    each next window starts from the last frame of the video so far, as its start image (WanGP's
    one-frame overlap of its image-to-video and 5B models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    overlap: int = Field(default=1, ge=1, le=1)  # frames shared by two windows: the start image


class SizeRule(BaseModel):
    """Allowed output sizes: either a fixed list of "WxH", or any size whose sides are multiples of
    `multiple`, the model's block in WanGP (vae_block_size), to which a requested size is floored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    multiple: int = Field(ge=1)
    min_side: int = Field(ge=1)
    max_side: int = Field(ge=1)
    fixed: list[str] = []  # when non-empty, only these "WxH" are allowed

    def floor(self, width: int, height: int) -> tuple[int, int]:
        """The size WanGP renders for a requested one: each side floored to the model's block
        (wgp.py generate_media, `int(width) // block_size * block_size`)."""
        return width // self.multiple * self.multiple, height // self.multiple * self.multiple

    def fit(self, canvas: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
        """The size WanGP renders from a start image: the image's aspect ratio at the canvas's pixel
        count, each side rounded to the block (shared/utils/utils.py calculate_new_dimensions, with
        WanGP's default fit_canvas 0)."""
        (width, height), (image_width, image_height) = canvas, image
        scale = (width * height / (image_width * image_height)) ** 0.5
        return (
            round(image_width * scale / self.multiple) * self.multiple,
            round(image_height * scale / self.multiple) * self.multiple,
        )

    def problem(self, width: int, height: int) -> str | None:
        """None when the size is allowed, else the rule it breaks, in words."""
        if self.fixed:
            if f"{width}x{height}" not in self.fixed:
                return f"must be one of {', '.join(self.fixed)}"
            return None
        for side in (width, height):
            if side % self.multiple:
                return f"width and height must be multiples of {self.multiple}"
            if not self.min_side <= side <= self.max_side:
                return f"width and height must be between {self.min_side} and {self.max_side}"
        return None


class AudioRule(BaseModel):
    """What an audio model renders: its waveform's rate and channels, and the durations it takes
    (WanGP's duration_seconds, in seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int = Field(ge=1)
    channels: int = Field(ge=1, le=2)
    min_seconds: float = Field(gt=0)
    max_seconds: float = Field(gt=0)
    default_seconds: float = Field(gt=0)
    # Audio samples per latent frame (the VAE's downsampling): sizes the work as latent tokens.
    samples_per_latent: int = Field(ge=1)


class Defaults(BaseModel):
    """What WanGP applies when a settings file leaves a key out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution: str
    video_length: int = 1
    num_inference_steps: int
    guidance_scale: float
    flow_shift: float | None = None
    sample_solver: str = "unipc"


class Latent(BaseModel):
    """How the VAE compresses pixels and how the transformer patches latents: sizes the work."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: int
    spatial: int  # pixels per latent side
    temporal: int = 1  # frames per latent frame (after the first)
    patch: list[int] = [1, 2, 2]  # (t, h, w) patch of the transformer
    hidden: int  # transformer width, for working memory
    layers: int
    ffn: int | None = None  # width of the transformer's MLP; None: 4 x hidden, the common ratio

    @property
    def ffn_width(self) -> int:
        return self.ffn if self.ffn is not None else 4 * self.hidden


class ModelPreset(BaseModel):
    """One model of the catalogue, as read from models/presets/<id>.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    family: str  # wan, hunyuan, ltx, flux, qwen-image
    task: Task
    output: Output
    pipeline: str  # diffusers pipeline class name
    repo: str | None  # Hugging Face repo in Diffusers format; None for tiny models built offline
    revision: str = "main"
    tiny: bool = False  # random weights, built offline by models.tiny
    wangp_model_types: list[str]  # WanGP `model_type` ids that mean this model
    # Takes a last frame (WanGP's image_end) in the call WanGP makes: first-last-frame models.
    end_image: bool = False
    # The guide files (GUIDE_INPUTS) its pipeline takes: VACE's control video, mask and reference
    # images, an edit model's images. models.guides refuses the others by name.
    inputs: list[str] = []
    # Renders videos longer than a window as WanGP's sliding windows; None: one window at most.
    windows: WindowRule | None = None
    fps: int | None = None  # native frame rate of a video model
    components: list[Component]
    frames: FrameRule | None = None  # None for image models
    audio: AudioRule | None = None  # audio models only
    sizes: SizeRule
    defaults: Defaults
    latent: Latent
    # Where byte sizes came from when not read from the repo's own file listing.
    sizes_source: str = ""
    description: str = ""
    # A model read from a WanGP definition (models.wangp_definitions): the catalogue model it
    # derives from, and the URLs (or file names) of its WanGP weight files, for a single-file load.
    derived_from: str | None = None
    wangp_weights: list[str] = []
    wangp_weights2: list[str] = []  # the second (low-noise) expert
    # A definition's merged modules (WanGP's VACE module), each its URLs (one per precision):
    # merged into every transformer loaded from the definition's own files (models.vace_modules).
    wangp_modules: list[list[str]] = []
    # A definition's built-in LoRAs (URLs or LoRA file names), applied before a job's own, each at
    # its WanGP multiplier entry ("1", "0;1"; missing ones are 1).
    builtin_loras: list[str] = []
    builtin_lora_multipliers: list[str] = []
    # A definition's other default settings (keys of WanGP's table beyond `defaults`), read as if a
    # settings file gave them when it leaves them out, as WanGP fills its form from the definition.
    wangp_defaults: dict[str, Any] = {}
    # WanGP's `attention` model key: the kernel the model runs on cards matching each condition
    # (e.g. {"<89": "sdpa"}), read by models.model_attention; {} leaves the machine's kernel.
    attention: dict[str, str] = {}
    # WanGP's LTX-2 model keys (models.ltx2_stages): ltx2_pipeline ("distilled": the distilled
    # checkpoints' schedule in both stages), and ltx2_lora_distilled, the second stage's LoRA of the
    # dev pipeline in place of the model's own; "" leaves the model's.
    ltx2_pipeline: str = ""
    ltx2_lora_distilled: str = ""

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(GUIDE_INPUTS))
        if unknown:
            raise ValueError(f"unknown guide input(s) {', '.join(unknown)}; known: {', '.join(GUIDE_INPUTS)}")
        return value

    @model_validator(mode="after")
    def _video_models_have_fps_and_frames(self) -> ModelPreset:
        if self.output is Output.VIDEO and (self.fps is None or self.frames is None):
            raise ValueError(f"{self.id}: a video model needs fps and frames")
        if (self.output is Output.AUDIO) != (self.audio is not None):
            raise ValueError(f"{self.id}: an audio model, and only one, has an audio rule")
        return self

    @property
    def weight_bytes(self) -> int:
        return sum(c.bytes for c in self.components)

    def component(self, role: Role) -> list[Component]:
        return [c for c in self.components if c.role is role]
