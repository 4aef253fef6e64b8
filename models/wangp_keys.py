"""Every key WanGP writes into a settings file, a queue.zip entry or an output's metadata, classified.

APPLIED keys WanFarm renders as WanGP does. NOOP_ONLY keys are accepted only at a value that does
nothing in WanGP (or while WanGP ignores them); any other value is refused, naming the key, the
value and what it does in WanGP. BOOKKEEPING keys change nothing rendered. A key missing from a
settings object is read as WanGP reads it: at WanGP's default for that model.

Read from deepbeepmeep/Wan2GP at commit 8681e9f777f9f847f74a0bdefd13d5b9a6efe12d: the keys and
their defaults in models/_settings.json; wgp.py's save_inputs (the keys a settings file holds),
prepare_inputs_dict and generate_media (what an output's metadata adds), _save_queue_to_zip,
clean_settings / get_factory_settings (a missing key takes the model's default), validate_settings
and fix_settings (what each key does, legacy names); shared/settings_metadata.py (the values at
which WanGP itself drops a key as doing nothing); the model handlers of models/wan, flux, hyvideo,
ltx_video and qwen (each model's capabilities and its defaults, in ModelFacts below).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property

from models import vace_letters
from models.loras import LoraPhases

UPSTREAM = "deepbeepmeep/Wan2GP@8681e9f777f9f847f74a0bdefd13d5b9a6efe12d"


class KeyClass(StrEnum):
    APPLIED = "applied"
    NOOP_ONLY = "noop_only"
    BOOKKEEPING = "bookkeeping"


@dataclass(frozen=True)
class ModelFacts:
    """What WanGP's definition of one model says about the settings it reads (its model_def and
    its handler's defaults). `wangp` is False for WanFarm's own models, which read every applied
    key as written."""

    wangp: bool = True
    guidance_phases: int = 1  # guidance_max_phases; 0: the model takes no guidance_scale
    # Wan 2.2 A14B: WanGP's default noise level (0-1000) where the low-noise expert takes over
    # (its diffusers pipeline's boundary_ratio x 1000); None on one-transformer models.
    expert_switch: int | None = None
    embedded_guidance: bool = False  # its guidance is embedded_guidance_scale (FLUX dev, Hunyuan)
    flow_shift: bool = True  # WanGP reads flow_shift for it
    samplers: tuple[str, ...] = ()  # WanGP's sample_solver choices; () when it offers none
    sliding_window: bool = False  # longer videos are rendered as overlapping windows
    riflex: bool = False  # RIFLEx position embedding for long videos
    audio: bool = False  # audio prompts or audio-only output
    alt_prompt: bool = False  # a second prompt and its guidance
    custom_settings: bool = False  # model-specific custom_settings entries
    input_video_strength: bool = False
    end_image: bool = False  # WanGP takes an end image for it ("E" in image_prompt_types_allowed)
    step_caches: tuple[str, ...] = ()  # WanGP's step skipping for it (tea_cache, mag_cache)
    # The model_mode values WanFarm renders as WanGP does where model_mode is the model's own mode
    # (SkyReels DF's asynchronous steps, ChronoEdit's process); () where it is the inpainting method.
    model_modes: tuple[int, ...] = ()
    # The video_prompt_type of a model whose control video is the video it edits (Lucy Edit: "UV",
    # the video as given); it renders with that value and a video_guide, nothing else.
    guide_letters: str = ""
    # The video_prompt_type letters of its reference images that WanFarm renders ("KI": FLUX
    # Kontext and FLUX.2, models.flux_refs); "" where it renders none.
    image_ref_letters: str = ""
    # WanGP removes the background of its reference images after the main one (rembg), unless the
    # model says no_background_removal (FLUX.2).
    removes_ref_background: bool = True
    # WanGP's VACE: its control video, mask and reference images (models.vace_letters says which
    # video_prompt_type letters WanFarm renders).
    vace: bool = False
    # WanGP's defaults for this model where they differ from models/_settings.json (the handler's
    # update_default_settings and defaults/<model_type>.json), for keys WanFarm does not fill itself.
    factory: Mapping[str, object] = field(default_factory=dict)
    # What WanGP's guidance_phases 2 renders where it is not a second guidance phase but a second
    # render stage (LTX-2, models.ltx2_stages); "" elsewhere.
    second_stage: str = ""
    # WanGP guides its generated soundtrack at audio_guidance_scale (LTX-2), where WanFarm guides the
    # audio at guidance_scale: only a value equal to it renders alike.
    audio_follows_guidance: bool = False
    # WanGP reads alt_guidance_scale and alt_scale without a second prompt: LTX-2's modality
    # guidance and guidance rescale.
    alt_guidance: bool = False
    # WanFarm renders LTX-2's guidance passes (audio CFG, modality guidance, rescale, skip-attention
    # guidance) as WanGP does; models.ltx2_stages.guidance_of checks their values.
    guidance_passes: bool = False
    # Its pipeline takes one guidance weight a step (Ideogram 4, models.ideogram4_call): every
    # guidance phase renders at its own scale, on one transformer.
    phased_guidance: bool = False
    # Z-Image ControlNet (models.z_image_control): its control image (image_guide, read with V in
    # video_prompt_type) at control_net_weight; WanGP reads no control_net_weight_alt there.
    control_net: bool = False

    @cached_property
    def unsettled(self) -> frozenset[str]:
        """The keys that, missing, may do something on this model depending on the rest of the
        settings; the defaults of the others do nothing whatever the rest (most keys of a file)."""
        return _unsettled_keys(self)


@dataclass(frozen=True)
class Reading:
    """One settings object as WanGP reads it for one model: the keys given, the applied keys at the
    values WanFarm renders, and WanGP's defaults for the rest."""

    model_type: str
    facts: ModelFacts
    given: Mapping[str, object]
    applied: Mapping[str, object]  # e.g. video_length, guidance_scale as rendered
    video: bool
    fps: int | None
    frame_step: int = 4  # the model's frame grid (offset + step*k), which WanGP floors a length to
    frame_offset: int = 1

    def get(self, key: str) -> object:
        """The value WanGP would use for `key` (clean_settings: a missing or null key takes the
        model's default)."""
        return self._values.get(key)

    @cached_property
    def _values(self) -> dict[str, object]:
        given = {key: value for key, value in self.given.items() if value is not None}
        return _DEFAULTS | dict(self.facts.factory) | given | dict(self.applied)

    def letters(self, key: str) -> str:
        value = self.get(key)
        return value if isinstance(value, str) else ""

    @property
    def phases(self) -> int:
        """Guidance phases WanGP runs: the setting capped by what the model allows."""
        wanted = _number(self.get("guidance_phases"))
        return min(int(wanted) if wanted is not None else 1, self.facts.guidance_phases)

    @property
    def frames(self) -> int:
        frames = self.applied.get("video_length")
        return frames if isinstance(frames, int) else 1


@dataclass(frozen=True)
class NoOp:
    """When a key does nothing in WanGP: a test of (value, reading) and the same rule in words.
    `by_value` is the part of the test that reads the value alone (None when every part reads the
    rest of the settings): a missing key it passes needs no further look."""

    test: Callable[[object, Reading], bool]
    words: str
    by_value: Callable[[object], bool] | None = None

    def __or__(self, other: NoOp) -> NoOp:
        parts = [part for part in (self.by_value, other.by_value) if part is not None]
        by_value = (lambda v: any(part(v) for part in parts)) if parts else None
        return NoOp(
            lambda v, r: self.test(v, r) or other.test(v, r), f"{self.words}, or {other.words}", by_value
        )


@dataclass(frozen=True)
class WanGPKey:
    """One key WanGP writes: its class, its WanGP default, what it does, and when it does nothing."""

    key: str
    kind: KeyClass
    does: str
    default: object = None  # models/_settings.json; None for keys outside it
    noop: NoOp | None = None  # NOOP_ONLY keys only
    # BOOKKEEPING keys that describe WanGP's own run (its file, codec, timing): an output of
    # WanFarm does not carry them over, it writes its own.
    of_the_run: bool = False
    # The key that switches this one on: while that one is refused, this one is not reported too.
    gate: str | None = None


# --- the rules -------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def same_value(a: object, b: object) -> bool:
    """Equal as WanGP compares settings: 5 and 5.0 are the same number; True is not 1."""
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return type(a) is type(b) and a == b


def _by_value(test: Callable[[object], bool], words: str) -> NoOp:
    return NoOp(lambda v, r: test(v), words, test)


def equal(*values: object) -> NoOp:
    numbers = {n for n in map(_number, values) if n is not None}
    others = [x for x in values if _number(x) is None]

    def test(value: object) -> bool:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value in numbers  # 1 and 1.0 hash alike
        return any(type(value) is type(x) and value == x for x in others)

    return _by_value(test, " or ".join(_show(v) for v in values))


def empty() -> NoOp:
    def test(value: object) -> bool:
        if isinstance(value, str):
            return not value.strip()
        return value is None or value == [] or value == {}

    return _by_value(test, "empty")


def at_most(limit: float) -> NoOp:
    return _by_value(lambda v: (n := _number(v)) is not None and n <= limit, f"at most {limit:g}")


def below(limit: float) -> NoOp:
    return _by_value(lambda v: (n := _number(v)) is not None and n < limit, f"below {limit:g}")


def same_as(other: str) -> NoOp:
    return NoOp(lambda v, r: same_value(v, r.get(other)), f"equal to {other}")


def falsy() -> NoOp:
    return _by_value(lambda v: not v, "0")


def unless(gate: Callable[[Reading], bool], words: str) -> NoOp:
    """Any value, while `gate` is false: WanGP does not read the key then."""
    return NoOp(lambda v, r: not gate(r), f"any value {words}")


def letter_in(key: str, letters: str) -> Callable[[Reading], bool]:
    # An editor's video_prompt_type (ModelFacts.guide_letters, Lucy Edit's "UV") only selects the
    # video it edits: WanGP reads none of the control-video settings from those letters.
    return lambda r: (
        not (key == "video_prompt_type" and r.facts.guide_letters)
        and any(letter in r.letters(key) for letter in letters)
    )


def active(key: str) -> Callable[[Reading], bool]:
    """True while `key` does something (is not at its no-op)."""

    def gate(reading: Reading) -> bool:
        noop = KEYS[key].noop
        return noop is None or not noop.test(reading.get(key), reading)

    return gate


def windows(reading: Reading) -> bool:
    """WanGP renders the video as sliding windows (generate_media: length > floored window size)."""
    size = _number(reading.get("sliding_window_size"))
    if not (reading.facts.sliding_window and reading.video) or size is None or size <= 0:
        return False
    step, offset = reading.frame_step, reading.frame_offset
    floored = max(int(size) - offset, 0) // step * step + offset
    return reading.frames > floored


@dataclass(frozen=True)
class ExpertPlan:
    """How Wan 2.2's two experts share one job, as WanGP runs it (guidance phases 1 to 3): the
    high-noise expert at guidance_scale, then the low-noise one at its own scale."""

    # The noise level (0-1000) at and below which the low-noise expert runs; 0: it never runs.
    switch: float
    low_noise_scale: float
    # The keys that hold the switch and the scale (phase 3's with model_switch_phase 2); None with
    # one phase, which runs the high-noise expert alone.
    switch_key: str | None
    scale_key: str | None


def expert_plan(reading: Reading) -> ExpertPlan | None:
    """The experts' switch and scales for a two-expert model; None for a model with one."""
    if reading.facts.expert_switch is None:
        return None
    if reading.phases < 2:
        return ExpertPlan(0.0, _float(reading.get("guidance_scale")), None, None)
    phase = _low_noise_phase(reading)
    switch_key = "switch_threshold" if phase == 2 else "switch_threshold2"
    scale_key = "guidance2_scale" if phase == 2 else "guidance3_scale"
    return ExpertPlan(_float(reading.get(switch_key)), _float(reading.get(scale_key)), switch_key, scale_key)


def lora_phases(reading: Reading) -> LoraPhases:
    """The phases WanGP reads loras_multipliers in (wgp.py: lora_multiplier_phases, the guidance
    phases, at least 1, on one transformer as on two): phase 2 from switch_threshold, phase 3 from
    switch_threshold2; model_switch_phase counts with 3 phases only."""
    count = max(reading.phases, 1)
    starts = tuple(_float(reading.get(key)) for key in ("switch_threshold", "switch_threshold2")[: count - 1])
    return LoraPhases(count, starts, _low_noise_phase(reading) - 1)


def _float(value: object) -> float:
    number = _number(value)
    return 0.0 if number is None else number


def _low_noise_phase(reading: Reading) -> int:
    # WanGP reads model_switch_phase (the phase after which the low-noise expert runs) only with
    # 3 phases; otherwise the experts switch where phase 2 starts.
    if reading.phases >= 3 and same_value(reading.get("model_switch_phase"), 2):
        return 3
    return 2


def _starts(reading: Reading, phase: int) -> bool:
    # A phase runs from the first step at or below its threshold: at 0 or below, no step reaches it.
    if reading.phases < phase:
        return False
    threshold = _number(reading.get("switch_threshold" if phase == 2 else "switch_threshold2"))
    return threshold is None or threshold > 0


def _guidance_at_switch(reading: Reading, phase: int) -> bool:
    """The guidance changes where `phase` starts as WanFarm renders it: at the expert switch of a
    two-expert model (the pipeline changes scale there only), or not at all."""
    if not _starts(reading, phase) or reading.facts.phased_guidance:
        return True
    two = reading.facts.expert_switch is not None
    if two and _low_noise_phase(reading) == phase:
        return True
    # Otherwise the phase keeps the scale of the one before it, on the same model.
    scale, before = _SCALES[phase - 1], _SCALES[phase - 2]
    return same_value(reading.get(scale), reading.get(before))


_SCALES = ("guidance_scale", "guidance2_scale", "guidance3_scale")  # of phases 1, 2 and 3


def _switch2_as_rendered(value: object, reading: Reading) -> bool:
    if reading.phases < 3:
        return True
    # WanGP refuses a phase 3 that would start before phase 2.
    first, second = _number(reading.get("switch_threshold")), _number(value)
    if first is not None and second is not None and second > first:
        return False
    return _guidance_at_switch(reading, 3)


def _riflex_as_rendered(value: object, reading: Reading) -> bool:
    # generate_media: RIFLEx is on when set to 1, or set to 0 (auto) and the video is longer than
    # 6 s + 1 frame at the model's frame rate.
    if not (reading.facts.riflex and reading.video) or same_value(value, 2):
        return True
    fps = reading.fps or 16
    return same_value(value, 0) and reading.frames <= 6 * fps + 1


def _image_mode_as_rendered(value: object, reading: Reading) -> bool:
    return same_value(value, 0) or (not reading.video and same_value(value, 1))


def _fps_as_rendered(value: object, reading: Reading) -> bool:
    if not reading.video or value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        fps = float(value) if isinstance(value, str) else _number(value)
    except ValueError:
        return False
    return fps is not None and reading.fps is not None and fps == reading.fps


def _several_start_images(reading: Reading) -> bool:
    value = reading.get("image_start")
    return isinstance(value, list) and len([v for v in value if v]) > 1


# Guidance phases on one transformer, or beyond Wan 2.2's expert switch, render only at one scale:
# diffusers' pipelines change the scale only where they change experts.
_SAME_EXPERT = "(the pipeline changes guidance only where it changes experts)"
SECOND_SCALE_AS_RENDERED = NoOp(
    lambda v, r: _guidance_at_switch(r, 2),
    "equal to guidance_scale; any value with one guidance phase, while switch_threshold is 0, or "
    f"where phase 2 starts Wan 2.2's low-noise expert (model_switch_phase 1) {_SAME_EXPERT}",
)
THIRD_SCALE_AS_RENDERED = NoOp(
    lambda v, r: _guidance_at_switch(r, 3),
    "equal to guidance2_scale; any value with fewer than 3 phases, while switch_threshold2 is 0, "
    f"or where phase 3 starts Wan 2.2's low-noise expert (model_switch_phase 2) {_SAME_EXPERT}",
)
SWITCH_AS_RENDERED = NoOp(
    lambda v, r: _guidance_at_switch(r, 2),
    "any value where phase 2 starts Wan 2.2's low-noise expert, or while phase 2 keeps "
    "guidance_scale (guidance2_scale equal to it)",
)
SWITCH2_AS_RENDERED = NoOp(
    _switch2_as_rendered,
    "any value with fewer than 3 phases; at most switch_threshold, and either where phase 3 starts "
    "Wan 2.2's low-noise expert or while phase 3 keeps phase 2's scale",
)
RIFLEX_AS_RENDERED = NoOp(_riflex_as_rendered, "2 (off), or 0 (auto) up to 6 s of video")
IMAGE_MODE_AS_RENDERED = NoOp(
    _image_mode_as_rendered, "0 (1 too on an image model)", lambda v: same_value(v, 0)
)
FPS_AS_RENDERED = NoOp(
    _fps_as_rendered, "empty or the model's own frame rate", lambda v: v is None or v == ""
)


# WanGP runs its prompt enhancer only where its server config enables one (enhancer_enabled, 0 by
# default); a model whose own default names one (ChronoEdit's "TI") renders unenhanced at it there.
def _enhancer_at_model_default(value: object, reading: Reading) -> bool:
    default = reading.facts.factory.get("prompt_enhancer")
    return bool(default) and same_value(value, default)


ENHANCER_AT_MODEL_DEFAULT = NoOp(
    _enhancer_at_model_default,
    "the model's own default (ChronoEdit's TI), which WanGP runs only where its server enables an enhancer",
)


def guide_letters_or(other: NoOp) -> NoOp:
    """video_prompt_type on a model whose control video is the video it edits (ModelFacts.guide_letters):
    exactly those letters, with a video_guide; on any other model, `other`."""

    def test(value: object, reading: Reading) -> bool:
        if reading.facts.guide_letters:
            return same_value(value, reading.facts.guide_letters) and bool(reading.get("video_guide"))
        return other.test(value, reading)

    return NoOp(test, f"{other.words}; on Lucy Edit UV with the video to edit as video_guide")


def control_letters_or(other: NoOp) -> NoOp:
    """video_prompt_type on a Z-Image ControlNet model: "" (Turbo alone) or "V" with an image_guide
    (the control image as given); P, D, E (WanGP's pose, depth, edge annotators) and A (its
    inpainting mask) are not rendered. On any other model, `other`."""

    def test(value: object, reading: Reading) -> bool:
        if reading.facts.control_net:
            return value in (None, "") or (value == "V" and bool(reading.get("image_guide")))
        return other.test(value, reading)

    return NoOp(
        test,
        f"{other.words}; on Z-Image ControlNet '' or 'V' with an image_guide (P, D and E run WanGP's "
        "pose, depth and edge annotators, which the farm has not; A is its inpainting)",
    )


def _control_weight(value: object, reading: Reading) -> bool:
    number = _number(value)
    return reading.facts.control_net and number is not None and 0 <= number <= 2


CONTROL_WEIGHT = NoOp(_control_weight, "0 to 2 on Z-Image ControlNet, which renders it")


def vace_letters_or(other: NoOp) -> NoOp:
    """video_prompt_type on a VACE model: the letters WanFarm renders there (models.vace_letters);
    on any other model, `other`."""

    def test(value: object, reading: Reading) -> bool:
        if reading.facts.vace:
            return vace_letters.letters_as_rendered(value, reading.get)
        return other.test(value, reading)

    return NoOp(test, f"{other.words}; {vace_letters.WORDS}")


def _model_mode_as_rendered(value: object, reading: Reading) -> bool:
    if reading.facts.model_modes:
        return value is None or any(same_value(value, mode) for mode in reading.facts.model_modes)
    return empty().test(value, reading) or not same_value(reading.get("image_mode"), 2)


MODEL_MODE_AS_RENDERED = NoOp(
    _model_mode_as_rendered,
    "empty, or any value outside inpainting; on SkyReels DF and ChronoEdit their first mode (0)",
    lambda v: v is None,
)


def _image_refs(reading: Reading) -> list[str]:
    value = reading.get("image_refs")
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str) and item.strip()]


def _ref_letters_as_rendered(value: object, reading: Reading) -> bool:
    # FLUX Kontext / FLUX.2 render their images as WanGP's "KI" does (the first one the main
    # subject, fitted to the canvas): images are read with both letters, and only then.
    letters = reading.facts.image_ref_letters
    if not letters:
        return empty().test(value, reading)
    if not isinstance(value, str) or set(value) - set(letters):
        return False
    return set(letters) <= set(value) if _image_refs(reading) else True


def _refs_lose_background(reading: Reading) -> bool:
    main = 1 if "K" in reading.letters("video_prompt_type") else 0
    return reading.facts.removes_ref_background and len(_image_refs(reading)) > main


REF_LETTERS_AS_RENDERED = NoOp(
    _ref_letters_as_rendered,
    "empty; on FLUX Kontext and FLUX.2 K and I, both when image_refs are given",
)


def _phase(n: int) -> Callable[[Reading], bool]:
    return lambda r: r.phases >= n


def _audio(reading: Reading) -> bool:
    return reading.facts.audio or bool(reading.letters("audio_prompt_type"))


def _passes() -> NoOp:
    # LTX-2's guidance passes render: models.ltx2_stages.guidance_of refuses the values they cannot.
    return NoOp(lambda _v, r: r.facts.guidance_passes, "any value on LTX-2, whose guidance passes render")


def _row(key: str, does: str, default: object, noop: NoOp) -> WanGPKey:
    return WanGPKey(key, KeyClass.NOOP_ONLY, does, default, noop)


def _applied(key: str, does: str, default: object = None) -> WanGPKey:
    return WanGPKey(key, KeyClass.APPLIED, does, default)


def _book(key: str, does: str, default: object = None, of_the_run: bool = False) -> WanGPKey:
    return WanGPKey(key, KeyClass.BOOKKEEPING, does, default, of_the_run=of_the_run)


def _gated(key: str, does: str, default: object, gate_key: str) -> WanGPKey:
    noop = unless(active(gate_key), f"while {gate_key} is off")
    return WanGPKey(key, KeyClass.NOOP_ONLY, does, default, noop, gate=gate_key)


def _with_letter(key: str, does: str, default: object, prompt_key: str, letters: str) -> WanGPKey:
    noop = unless(letter_in(prompt_key, letters), f"without {letters} in {prompt_key}")
    return WanGPKey(key, KeyClass.NOOP_ONLY, does, default, noop, gate=prompt_key)


def _letter_or(key: str, does: str, default: object, prompt_key: str, letters: str, noop: NoOp) -> WanGPKey:
    # A letter WanFarm renders (VACE's V, A): the key is then accepted at its no-op value.
    gated = unless(letter_in(prompt_key, letters), f"without {letters} in {prompt_key}")
    return WanGPKey(key, KeyClass.NOOP_ONLY, does, default, noop | gated, gate=prompt_key)


def _in_windows(key: str, does: str, default: object) -> WanGPKey:
    noop = unless(windows, "while the video fits in one window")
    return WanGPKey(key, KeyClass.NOOP_ONLY, does, default, noop, gate="sliding_window_size")


# --- the table -------------------------------------------------------------------------------------

_ROWS: tuple[WanGPKey, ...] = (
    # What WanFarm renders.
    _applied("model_type", "the model (WanGP's model_type or a catalogue id)"),
    _applied("prompt", "the text prompt", ""),
    _applied("negative_prompt", "what to steer away from", ""),
    _applied("resolution", "the size, floored to the model's block as WanGP does", "832x480"),
    _applied("video_length", "frames of a video", 81),
    _applied("num_inference_steps", "denoising steps", 30),
    _applied("seed", "the seed (-1: random)", -1),
    _applied("guidance_scale", "classifier-free guidance (models that take one)", 5),
    _applied("embedded_guidance_scale", "the distilled guidance of FLUX dev and HunyuanVideo", 6.0),
    _applied("flow_shift", "the flow-matching shift (models that take one)", 3),
    _applied("sample_solver", "the sampler", ""),
    _applied("batch_size", "images a call (WanGP renders one video a call)", 1),
    _applied("repeat_generation", "outputs in a row, each with its own seed", 1),
    _applied("image_start", "the start image of image-to-video", None),
    _applied(
        "image_prompt_type", "which image inputs are used: T (text only), S (start image), E (end image)", ""
    ),
    _applied("image_end", "the end frame the video must reach (first-last-frame models)", None),
    _applied("film_grain_intensity", "film grain added after rendering", 0),
    _applied("film_grain_saturation", "colour of the film grain", 0.5),
    _applied("spatial_upsampling", "Lanczos upscaling after rendering", ""),
    _applied("activated_loras", "LoRA files to apply", []),
    _applied("loras_multipliers", "LoRA weights, per step and phase", ""),
    _applied("multi_prompts_gen_type", "what several prompt lines mean (one job per line)", "PG"),
    # What a generation does besides rendering the prompt.
    _row("mode", "runs a post-processing edit of an existing output instead of a generation", "", empty()),
    _row(
        "image_mode",
        "renders an image with a video model (1) or inpaints an image (2)",
        0,
        IMAGE_MODE_AS_RENDERED,
    ),
    _row(
        "prompt_enhancer",
        "rewrites the prompt with a language model before rendering",
        "",
        empty() | ENHANCER_AT_MODEL_DEFAULT,
    ),
    _row(
        "alt_prompt",
        "a second prompt some models read",
        "",
        empty() | unless(lambda r: r.facts.alt_prompt, "on models without one"),
    ),
    _applied(
        "image_refs",
        "reference images (people, objects, background; an edit model's images), on models that take them",
        None,
    ),
    _row(
        "image_guide",
        "a control image",
        None,
        empty() | NoOp(lambda v, r: r.facts.control_net, "a file on Z-Image ControlNet, which renders it"),
    ),
    _row("image_mask", "the inpainting mask of an image", None, empty()),
    _applied("video_guide", "a control video (pose, depth, video-to-video), on models that take one", None),
    _row("video_guide2", "a second control video", None, empty()),
    _applied("video_mask", "the inpainting mask of the control video, on models that take one", None),
    _row("video_source", "a video to continue", None, empty()),
    _row("audio_guide", "the speech a talking model follows", None, empty()),
    _row("audio_guide2", "the second speaker's speech", None, empty()),
    _row("audio_source", "a soundtrack to mux into the video", None, empty()),
    _row("custom_guide", "a model-specific guide file", None, empty()),
    _row("replace_voice_sample", "a voice sample for voice replacement", None, empty()),
    _row("replace_voice_sample2", "a second voice sample", None, empty()),
    _row(
        "video_prompt_type",
        "control video, reference image and mask modes (letters V, I, A, G, ...)",
        "",
        control_letters_or(guide_letters_or(vace_letters_or(REF_LETTERS_AS_RENDERED))),
    ),
    _row("audio_prompt_type", "audio prompt modes (letters A, B, ...)", "", empty()),
    _row(
        "model_mode",
        "the inpainting method, or a model's own mode (SkyReels DF: asynchronous steps; ChronoEdit)",
        None,
        MODEL_MODE_AS_RENDERED,
    ),
    _row(
        "custom_settings",
        "model-specific settings",
        None,
        empty() | unless(lambda r: r.facts.custom_settings, "on models without any"),
    ),
    _row("force_fps", "renders and encodes at another frame rate", "", FPS_AS_RENDERED),
    _row(
        "multi_images_gen_type",
        "how several start images pair with prompts",
        0,
        equal(0) | unless(_several_start_images, "with at most one start image"),
    ),
    # Audio models (Output.AUDIO) render it (models.audio_call); models.settings refuses it
    # elsewhere, as before, unless the model takes audio prompts (accepted there as doing nothing).
    _applied("duration_seconds", "the length of an audio output, in seconds (audio models)", 0),
    _row(
        "pause_seconds",
        "pauses between spoken sentences",
        0,
        equal(0) | unless(_audio, "on a model without audio"),
    ),
    _row("motion_amplitude", "amplifies motion in image-to-video", 1.0, equal(1)),
    _with_letter(
        "keep_frames_video_source", "frames kept from a source video", "", "image_prompt_type", "VL"
    ),
    _letter_or(
        "keep_frames_video_guide", "frames of the control video kept", "", "video_prompt_type", "V", empty()
    ),
    _row("video_guide_outpainting", "outpaints the control video", "#", equal("", "#")),
    _with_letter(
        "video_guide_outpainting_ratio", "the outpainting's aspect ratio", "", "video_prompt_type", "V"
    ),
    _with_letter(
        "denoising_strength", "how much of the control video is re-noised", 1.0, "video_prompt_type", "G"
    ),
    _with_letter("masking_strength", "how long the mask constrains denoising", 1, "video_prompt_type", "G"),
    _row(
        "input_video_strength",
        "how strongly the start image or source video conditions the video",
        1.0,
        equal(1) | unless(lambda r: r.facts.input_video_strength, "on models without it"),
    ),
    _letter_or("mask_expand", "grows the mask by this many pixels", 0, "video_prompt_type", "A", equal(0)),
    _with_letter("frames_positions", "where reference frames are injected", "", "video_prompt_type", "F"),
    WanGPKey(
        "image_refs_relative_size",
        KeyClass.NOOP_ONLY,
        "the size of reference images in the frame",
        50,
        unless(letter_in("video_prompt_type", "I"), "without I in video_prompt_type")
        | unless(
            lambda r: not r.facts.image_ref_letters, "on FLUX Kontext and FLUX.2 (images at their own size)"
        ),
        gate="video_prompt_type",
    ),
    WanGPKey(
        "remove_background_images_ref",
        KeyClass.NOOP_ONLY,
        "removes reference images' backgrounds",
        1,
        unless(letter_in("video_prompt_type", "I"), "without I in video_prompt_type")
        | equal(0)
        | NoOp(
            lambda v, r: bool(r.facts.image_ref_letters) and not _refs_lose_background(r),
            "any value on FLUX Kontext with one image (its main subject keeps its background), and on FLUX.2",
        ),
        # No gate: Kontext's default (1, with "KI") removes backgrounds whenever a second image comes.
    ),
    _letter_or(
        "min_frames_if_references",
        "frames rendered for an image with references",
        1,
        "video_prompt_type",
        "IV",
        # An image model (the Qwen and FLUX edit models) renders its one image whatever the letters.
        NoOp(lambda v, r: not r.video and same_value(v, 1), "1 on image models"),
    ),
    _letter_or(
        "control_net_weight",
        "the strength of the control video",
        1,
        "video_prompt_type",
        "V",
        equal(1) | CONTROL_WEIGHT,
    ),
    _with_letter(
        "control_net_weight2", "the strength of the second control video", 1, "video_prompt_type", "V"
    ),
    WanGPKey(
        "control_net_weight_alt",
        KeyClass.NOOP_ONLY,
        "the strength of the alternative control",
        1,
        unless(letter_in("video_prompt_type", "V"), "without V in video_prompt_type")
        | NoOp(lambda v, r: r.facts.control_net, "any value on Z-Image ControlNet, which reads none"),
        gate="video_prompt_type",
    ),
    _row(
        "speakers_locations",
        "where each speaker stands",
        "0:45 55:100",
        unless(_audio, "on a model without audio"),
    ),
    # Guidance beyond one scale.
    _applied(
        "guidance_phases",
        "guidance phases (Wan 2.2: 1 runs the high-noise expert alone; with more, the low-noise "
        "expert takes over where phase 2 starts, or phase 3 with model_switch_phase 2)",
        1,
    ),
    _row("guidance2_scale", "the guidance scale of phase 2", 5, SECOND_SCALE_AS_RENDERED),
    _row("guidance3_scale", "the guidance scale of phase 3", 5, THIRD_SCALE_AS_RENDERED),
    _row("switch_threshold", "the noise level where phase 2 starts", 0, SWITCH_AS_RENDERED),
    _row("switch_threshold2", "the noise level where phase 3 starts", 0, SWITCH2_AS_RENDERED),
    _row(
        "model_switch_phase",
        "the phase after which Wan 2.2's low-noise expert takes over",
        1,
        equal(1, 2)
        | unless(_phase(3), "with fewer than 3 phases")
        | unless(lambda r: r.facts.expert_switch is not None, "on one-transformer models"),
    ),
    _row(
        "alt_guidance_scale",
        "the guidance of the second prompt (LTX-2: modality guidance)",
        1.0,
        equal(1)
        | unless(lambda r: r.facts.alt_prompt or r.facts.alt_guidance, "on models without one")
        | _passes(),
    ),
    _row(
        "alt_scale",
        "the weight of the second prompt (LTX-2: guidance rescale)",
        0.0,
        equal(0)
        | unless(lambda r: r.facts.alt_prompt or r.facts.alt_guidance, "on models without one")
        | _passes(),
    ),
    _row(
        "audio_guidance_scale",
        "the guidance of the audio prompt",
        1,
        unless(lambda r: _audio(r) or r.facts.audio_follows_guidance, "on a model without audio")
        | NoOp(
            lambda v, r: r.facts.audio_follows_guidance and same_value(v, r.get("guidance_scale")),
            "equal to guidance_scale on LTX-2",
        )
        | _passes(),
    ),
    _row("audio_scale", "the weight of the audio prompt", 1, unless(_audio, "on a model without audio")),
    _row("NAG_scale", "Normalized Attention Guidance", 1, at_most(1)),
    _gated("NAG_tau", "NAG's normalisation threshold", 3.5, "NAG_scale"),
    _gated("NAG_alpha", "NAG's blend", 0.5, "NAG_scale"),
    _row(
        "perturbation_switch",
        "skip-layer / perturbed-attention guidance",
        0,
        at_most(0) | NoOp(lambda v, r: r.facts.guidance_passes and _number(v) == 2, "2 on LTX-2"),
    ),
    _gated("perturbation_layers", "the layers the perturbation skips", [9], "perturbation_switch"),
    _gated("perturbation_start_perc", "where the perturbation starts", 10, "perturbation_switch"),
    _gated("perturbation_end_perc", "where the perturbation ends", 90, "perturbation_switch"),
    _row("apg_switch", "Adaptive Projected Guidance", 0, falsy()),
    _row("cfg_star_switch", "CFG-Zero* rescaling of the guidance", 0, falsy()),
    _row("cfg_zero_step", "zeroes the first steps' prediction (CFG-Zero init)", -1, below(0)),
    _row("self_refiner_setting", "re-denoises uncertain regions (self refiner)", 0, at_most(0)),
    _gated("self_refiner_plan", "the self refiner's plan", "", "self_refiner_setting"),
    _gated("self_refiner_f_uncertainty", "the self refiner's uncertainty", 0.0, "self_refiner_setting"),
    _gated("self_refiner_certain_percentage", "the self refiner's certainty", 0.999, "self_refiner_setting"),
    _row(
        "temperature",
        "sampling temperature of audio language models",
        0.8,
        unless(lambda r: r.facts.audio, "on a model without audio"),
    ),
    _row(
        "top_p",
        "nucleus sampling of audio language models",
        0.9,
        unless(lambda r: r.facts.audio, "on a model without audio"),
    ),
    _row(
        "top_k",
        "top-k sampling of audio language models",
        50,
        unless(lambda r: r.facts.audio, "on a model without audio"),
    ),
    # Speed-ups that change the frames.
    _applied("skip_steps_cache_type", "skips steps with a cache (tea, mag) at some loss", ""),
    _applied("skip_steps_multiplier", "the speed-up the step cache aims at", 1.75),
    _applied("skip_steps_start_step_perc", "the share of steps run before steps may be skipped", 0),
    _row(
        "RIFLEx_setting",
        "RIFLEx position embedding for long videos (0 auto, 1 on, 2 off)",
        0,
        RIFLEX_AS_RENDERED,
    ),
    # Long videos.
    _applied("sliding_window_size", "splits a longer video into windows (models with a windows rule)", 129),
    _applied("sliding_window_overlap", "frames shared by two windows (1: the last frame starts the next)", 5),
    _in_windows("sliding_window_color_correction_strength", "colour matching between windows", 0),
    _in_windows("sliding_window_overlap_noise", "noise added to the shared frames", 0),
    _applied("sliding_window_discard_last_frames", "frames dropped at each window's end", 0),
    _in_windows("sliding_window_trim_first_frames", "frames dropped at a window's start", 0),
    _in_windows("sub_parallel_window_size", "windows rendered in parallel", 0),
    _in_windows("sub_parallel_window_overlap", "overlap of parallel windows", 17),
    # After rendering.
    _row("temporal_upsampling", "interpolates frames (RIFE) after rendering", "", empty()),
    _row("postprocess_audio", "generates or processes a soundtrack (MMAudio, ...)", "", empty()),
    _gated("postprocess_audio_prompt", "the soundtrack's prompt", "", "postprocess_audio"),
    _gated("postprocess_audio_neg_prompt", "the soundtrack's negative prompt", "", "postprocess_audio"),
    _row("replace_voice_method", "replaces voices in the soundtrack", "", empty()),
    # How WanGP runs the model.
    _applied("override_profile", "the job's memory profile (-1: WanFarm picks one per agent)", -1),
    _applied("override_attention", "the job's attention kernel ('': WanFarm picks one per agent)", ""),
    _row(
        "attention_sparsity",
        "sparsity of the 'sol' attention kernel",
        1.0,
        unless(lambda r: r.letters("override_attention") == "sol", "without the 'sol' kernel"),
    ),
    _row("config", "selects another configuration of the model", "", empty()),
    # Older names WanGP still converts when it reads a file (fix_settings).
    _row("prompts", "an old name of prompt, which it replaces", None, empty()),
    _applied("tea_cache_setting", "an old name of the TeaCache step cache at its multiplier (0: off)"),
    _applied("tea_cache_start_step_perc", "an old name of skip_steps_start_step_perc"),
    _row("slg_switch", "an old name of perturbation_switch", None, empty() | at_most(0)),
    _gated("slg_layers", "an old name of perturbation_layers", None, "slg_switch"),
    _gated("slg_start_perc", "an old name of perturbation_start_perc", None, "slg_switch"),
    _gated("slg_end_perc", "an old name of perturbation_end_perc", None, "slg_switch"),
    # Nothing rendered depends on these.
    _book("type", "the WanGP version and model name that wrote the file", of_the_run=True),
    _book("settings_version", "the version of WanGP's settings format"),
    _book("base_model_type", "the architecture of a finetuned model_type"),
    _book("client_id", "the API client that queued the job", ""),
    _book("output_filename", "the output's file name", ""),
    _book("keep_intermediate_sliding_windows", "keeps each window's file", 1),
    _book("lset_name", "the LoRA preset selected in the UI"),
    # flux2_dev.json sets it; WanGP reads no such setting (generate() takes num_inference_steps under
    # that name), so its steps stay num_inference_steps's.
    _book("sampling_steps", "a step count some of WanGP's definitions carry and WanGP never reads"),
    _book("model_filename", "WanGP's weight file", of_the_run=True),
    _book("generation_time", "seconds the render took", of_the_run=True),
    _book("creation_date", "when the output was written", of_the_run=True),
    _book("creation_timestamp", "when the output was written", of_the_run=True),
    _book("image_quality", "WanGP's image codec", of_the_run=True),
    _book("video_quality", "WanGP's video codec", of_the_run=True),
    _book("hdr", "the output was encoded HDR", of_the_run=True),
    _book("hdr_video_crf", "WanGP's HDR encoder quality", of_the_run=True),
    _book("modules", "modules merged into the model_type", of_the_run=True),
    _book("transformer_loras_filenames", "LoRAs built into the model_type", of_the_run=True),
    _book("transformer_loras_multipliers", "their weights", of_the_run=True),
    _book("window_no", "the sliding window an output ends at", of_the_run=True),
    _book("enhanced_prompt", "the prompt after the prompt enhancer", of_the_run=True),
    _book("enhanced_alt_prompt", "the second prompt after the prompt enhancer", of_the_run=True),
    _book("postprocess_audio_seed", "the seed of the soundtrack", of_the_run=True),
    _book("audio_postprocess", "the soundtrack processor's name", of_the_run=True),
    # Written by WanFarm into its own outputs.
    _book("model_id", "the catalogue id WanFarm rendered (WanFarm)"),
    _book("wanfarm", "how WanFarm ran the job (WanFarm)", of_the_run=True),
)

KEYS: dict[str, WanGPKey] = {row.key: row for row in _ROWS}
_DEFAULTS: dict[str, object] = {row.key: row.default for row in _ROWS}


# --- WanGP's models of the catalogue ---------------------------------------------------------------

_WAN_SAMPLERS = ("unipc", "euler", "dpm++", "causvid", "lcm")
# get_factory_settings: flow_shift 5 (7 for 480p i2v), then each handler's and file's own values.
_WAN = ModelFacts(
    guidance_phases=3, samplers=_WAN_SAMPLERS, sliding_window=True, riflex=True, step_caches=("tea", "mag")
)
# models/wan/wan_handler.py: image-to-video models take an end image (image_prompt_types "SEVL").
# Its one-frame window overlap (test_oneframe_overlap: the last frame starts the next window).
_WAN_I2V = replace(_WAN, end_image=True, factory={"sliding_window_overlap": 1})
_HUNYUAN_1_5_T2V = ModelFacts(riflex=True, step_caches=("mag",))
_HUNYUAN_1_5_I2V = ModelFacts(
    riflex=True,
    sliding_window=True,
    step_caches=("mag",),
    factory={"image_prompt_type": "S", "sliding_window_overlap": 1},
)
_SKY_DF = ModelFacts(
    guidance_phases=1,
    sliding_window=True,
    model_modes=(0,),
    step_caches=("tea",),
    factory={"RIFLEx_setting": 2, "sliding_window_size": 97},
)
# FLUX.2's handler defaults (update_default_settings) beside its guidance.
_FLUX2_FACTORY = {"denoising_strength": 1.0, "masking_strength": 0.25, "remove_background_images_ref": 0}
_K5 = ModelFacts(guidance_phases=1, step_caches=("mag",), factory={"skip_steps_start_step_perc": 20})
# Stable Audio 3 (models/TTS/stable_audio3_handler.py): audio only, one guidance phase, no flow
# shift, its own samplers (models.audio_call renders pingpong and euler); update_default_settings
# renders 30 s at 8 steps. Its audio_scale is the noise level of audio-to-audio ("AE" in
# audio_prompt_type), which does nothing in text-to-audio, the only mode rendered.
_SA3 = ModelFacts(
    guidance_phases=1,
    flow_shift=False,
    samplers=("pingpong", "euler", "dpmpp", "rk4"),
    factory={"duration_seconds": 30, "sample_solver": "pingpong", "audio_scale": 0.9, "video_length": 0},
)
# ACE-Step 1.5 and 1.5 XL without their 5 Hz LM (models/TTS/ace_step_handler.py): audio only, no
# guidance (guidance_max_phases 0), flow_shift read as the shift of its 8-step schedule.
# models.ace_step_call renders its caption (alt_prompt) and song settings (custom_settings) and
# refuses model_mode 1-4 (the LM's), so their rows read it as a model without them; the LM's keys
# (temperature, top_p, top_k, alt_guidance_scale) do nothing without the LM, audio_scale nothing
# without a source audio ("A"). Factory: get_factory_settings' flow_shift 5, update_default_settings, then
# defaults/ace_step_v1_5.json and ace_step_v1_5_xl.json (the same settings).
_ACE15 = ModelFacts(
    guidance_phases=0,
    factory={
        "flow_shift": 5.0,
        "duration_seconds": 120,
        "num_inference_steps": 8,
        "guidance_scale": 1.0,
        "video_length": 0,
        "alt_prompt": "Dreamy synth-pop with shimmering pads, soft vocals, and a slow dance groove.",
        "audio_scale": 0.5,
        "temperature": 0.85,
        "top_p": 0.9,
        "top_k": 0,
        "alt_guidance_scale": 2.5,
        "multi_prompts_gen_type": "FG",
    },
)
MODEL_FACTS: dict[str, ModelFacts] = {
    "t2v": _WAN,
    "t2v_1.3B": _WAN,
    "i2v": _WAN_I2V,
    # Fun InP 1.3B: test_class_i2v in models/wan/wan_handler.py, the same facts as Wan 2.1 I2V.
    "fun_inp_1.3B": _WAN_I2V,
    "flf2v_720p": _WAN_I2V,
    "ti2v_2_2": replace(_WAN, step_caches=("mag",), factory={"sliding_window_overlap": 1}),
    "t2v_2_2": ModelFacts(
        guidance_phases=3,
        expert_switch=875,
        samplers=_WAN_SAMPLERS,
        sliding_window=True,
        riflex=True,
        step_caches=("mag",),
        factory={"guidance_phases": 2, "switch_threshold": 875, "guidance2_scale": 3},
    ),
    # models/wan/wan_handler.py: VACE is Wan t2v with guides; defaults/vace_fun_14B_2_2.json sets
    # guidance 1 on both experts, switching at 875.
    **dict.fromkeys(("vace_1.3B", "vace_14B"), replace(_WAN, vace=True)),
    "vace_fun_14B_2_2": ModelFacts(
        guidance_phases=3,
        expert_switch=875,
        samplers=_WAN_SAMPLERS,
        sliding_window=True,
        riflex=True,
        step_caches=("mag",),
        vace=True,
        factory={"guidance_phases": 2, "switch_threshold": 875, "guidance2_scale": 1},
    ),
    "i2v_2_2": ModelFacts(
        guidance_phases=3,
        expert_switch=900,
        samplers=_WAN_SAMPLERS,
        sliding_window=True,
        riflex=True,
        end_image=True,
        step_caches=("mag",),
        factory={
            "guidance_phases": 2,
            "switch_threshold": 900,
            "guidance2_scale": 3.5,
            "masking_strength": 0.1,
            "denoising_strength": 0.9,
            "sliding_window_overlap": 1,
        },
    ),
    "hunyuan": ModelFacts(
        guidance_phases=0,
        embedded_guidance=True,
        riflex=True,
        step_caches=("tea", "mag"),
        factory={"guidance_scale": 7.0, "flow_shift": 5.0},
    ),
    # models/hyvideo/hunyuan_handler.py: HunyuanVideo I2V takes a start image (no end image), with
    # the embedded guidance of HunyuanVideo.
    "hunyuan_i2v": ModelFacts(
        guidance_phases=0,
        embedded_guidance=True,
        riflex=True,
        step_caches=("tea", "mag"),
        factory={
            "guidance_scale": 7.0,
            "flow_shift": 5.0,
            "image_prompt_type": "S",
            "sliding_window_overlap": 1,
        },
    ),
    # HunyuanVideo 1.5: one phase of real CFG, MagCache only, sliding windows on i2v but not t2v; the
    # 720p definitions set sliding_window_size 97 (defaults/hunyuan_1_5_*.json).
    "hunyuan_1_5_t2v": replace(_HUNYUAN_1_5_T2V, factory={"sliding_window_size": 97}),
    "hunyuan_1_5_480_t2v": _HUNYUAN_1_5_T2V,
    "hunyuan_1_5_i2v": replace(
        _HUNYUAN_1_5_I2V, factory={**_HUNYUAN_1_5_I2V.factory, "sliding_window_size": 97}
    ),
    "hunyuan_1_5_480_i2v": _HUNYUAN_1_5_I2V,
    "ltxv_13B": ModelFacts(
        guidance_phases=0, flow_shift=False, sliding_window=True, factory={"flow_shift": 5.0}
    ),
    "ltxv_distilled": ModelFacts(
        guidance_phases=0, flow_shift=False, sliding_window=True, factory={"flow_shift": 5.0}
    ),
    "flux": ModelFacts(
        guidance_phases=0,
        embedded_guidance=True,
        flow_shift=False,
        factory={"embedded_guidance_scale": 2.5, "flow_shift": 5.0},
    ),
    "flux_schnell": ModelFacts(
        guidance_phases=0, flow_shift=False, factory={"embedded_guidance_scale": 2.5, "flow_shift": 5.0}
    ),
    # models/flux/flux_handler.py: Kontext and FLUX.2 take reference images ("KI"); Kontext's
    # default reads them, FLUX.2's ("") does not and removes no background. FLUX.2 dev embeds its
    # guidance (4); Klein embeds none: the distilled one runs no CFG (guidance_max_phases 0), the
    # base one true CFG (its definition's guidance_max_phases 1).
    "flux_dev_kontext": ModelFacts(
        guidance_phases=0,
        embedded_guidance=True,
        flow_shift=False,
        image_ref_letters="KI",
        factory={"embedded_guidance_scale": 2.5, "flow_shift": 5.0, "video_prompt_type": "KI"},
    ),
    "flux2_dev": ModelFacts(
        guidance_phases=0,
        embedded_guidance=True,
        flow_shift=False,
        image_ref_letters="KI",
        removes_ref_background=False,
        factory={"embedded_guidance_scale": 4.0, "flow_shift": 5.0, **_FLUX2_FACTORY},
    ),
    **dict.fromkeys(
        ("flux2_klein_4b", "flux2_klein_9b"),
        ModelFacts(
            guidance_phases=0,
            flow_shift=False,
            image_ref_letters="KI",
            removes_ref_background=False,
            factory={"embedded_guidance_scale": 1.0, "flow_shift": 5.0, **_FLUX2_FACTORY},
        ),
    ),
    **dict.fromkeys(
        ("flux2_klein_base_4b", "flux2_klein_base_9b"),
        ModelFacts(
            guidance_phases=1,
            flow_shift=False,
            image_ref_letters="KI",
            removes_ref_background=False,
            factory={"embedded_guidance_scale": 1.0, "flow_shift": 5.0, **_FLUX2_FACTORY},
        ),
    ),
    "qwen_image_20B": ModelFacts(
        flow_shift=False, samplers=("default", "lightning"), factory={"flow_shift": 5.0}
    ),
    # models/qwen/qwen_handler.py: the edit models read their input images as reference images
    # ("KI": the first one the main subject, the output at its aspect ratio; models.qwen_edit);
    # Edit's default reads them, Edit Plus's ("") renders from the prompt.
    "qwen_image_edit_20B": ModelFacts(
        flow_shift=False,
        samplers=("default", "lightning"),
        image_ref_letters="KI",
        factory={"flow_shift": 5.0, "video_prompt_type": "KI", "denoising_strength": 1.0, "model_mode": 0},
    ),
    **dict.fromkeys(
        ("qwen_image_edit_plus_20B", "qwen_image_edit_plus2_20B"),
        ModelFacts(
            flow_shift=False,
            samplers=("default", "lightning"),
            image_ref_letters="KI",
            factory={"flow_shift": 5.0, "video_prompt_type": "", "denoising_strength": 1.0, "model_mode": 0},
        ),
    ),
    # models/z_image/z_image_handler.py: Turbo runs without guidance or flow shift (guidance_max_phases
    # 0, NAG off at 1); the base model with CFG 4 and flow shift 6.
    "z_image": ModelFacts(
        guidance_phases=0, flow_shift=False, factory={"guidance_scale": 0, "flow_shift": 5.0}
    ),
    "z_image_base": ModelFacts(factory={"guidance_scale": 4, "flow_shift": 6.0}),
    # Its ControlNets (z_image_handler.py: Turbo's defaults, control_net_weight 0.75, guide letters
    # '', PV, DV, EV, V; Union 2.x's mask letters A, NA).
    **dict.fromkeys(
        ("z_image_control", "z_image_control2", "z_image_control2_1"),
        ModelFacts(
            guidance_phases=0,
            flow_shift=False,
            control_net=True,
            factory={"guidance_scale": 0, "flow_shift": 5.0, "control_net_weight": 0.75},
        ),
    ),
    # models/krea2/krea2_handler.py: Raw runs CFG (one phase), Turbo none (guidance_max_phases 0);
    # both take their shift from the image size (krea2_main._timesteps), reading no flow_shift.
    "krea2_raw": ModelFacts(
        flow_shift=False, factory={"flow_shift": 5.0, "guidance_scale": 3.5, "num_inference_steps": 52}
    ),
    "krea2_turbo": ModelFacts(
        guidance_phases=0,
        flow_shift=False,
        factory={"flow_shift": 5.0, "guidance_scale": 0, "num_inference_steps": 8},
    ),
    # models/ideogram4/ideogram4_handler.py: up to 3 guidance phases, each step's CFG weight its
    # phase's (models.ideogram4_call); WanGP's samplers euler, res_2m, res_2s; custom settings
    # ideogram_mu / ideogram_std, which models.ideogram4_call renders (and checks), so its row reads
    # it as a model without any. Factory: get_factory_settings (832x480), update_default_settings'
    # preset V4_DEFAULT_20, then defaults/ideogram4.json (its model_mode, reset by fix_settings).
    "ideogram4": ModelFacts(
        guidance_phases=3,
        phased_guidance=True,
        samplers=("euler", "res_2m", "res_2s"),
        factory={
            "image_mode": 1,
            "batch_size": 1,
            "num_inference_steps": 20,
            "guidance_phases": 2,
            "guidance_scale": 7.0,
            "guidance2_scale": 3.0,
            "switch_threshold": 211,
            "sample_solver": "euler",
            "flow_shift": 1.0,
            "custom_settings": {"ideogram_mu": 0.0, "ideogram_std": 1.75},
        },
    ),
    # models/flux/flux_handler.py: Chroma runs real CFG (guidance_max_phases 1) and no NAG; its
    # network feeds its approximator a guidance of 0 (models/flux/model.py), so the embedded
    # guidance that the handler marks for it changes nothing; the shift comes from the image size.
    "flux_chroma": ModelFacts(
        flow_shift=False,
        factory={
            "embedded_guidance_scale": 2.5,
            "flow_shift": 5.0,
            "guidance_scale": 3.0,
            "num_inference_steps": 20,
        },
    ),
    # Wan offshoots (models/wan/df_handler.py, wan_handler.py): SkyReels DF renders one window
    # synchronously (model_mode 0), without RIFLEx (DTT2V turns it off); ChronoEdit's default is an
    # image (image_mode 1, model_mode 0: 5 frames, the last kept); Lucy Edit reads its control video
    # ("UV").
    **dict.fromkeys(("sky_df_1.3B", "sky_df_14B"), _SKY_DF),
    # Its handler reads the base type (sky_df_14B): WanGP's 720p window is 97 frames too.
    "sky_df_720p_14B": _SKY_DF,
    "chrono_edit": ModelFacts(
        guidance_phases=1,
        samplers=_WAN_SAMPLERS,
        model_modes=(0,),
        step_caches=("tea", "mag"),
        factory={"image_mode": 1, "prompt_enhancer": "TI"},
    ),
    "lucy_edit": replace(
        _WAN,
        step_caches=("mag",),
        guide_letters="UV",
        factory={"video_prompt_type": "UV", "sliding_window_size": 121},
    ),
    # Kandinsky 5 (models/kandinsky5/kandinsky_handler.py): one guidance phase, no sampler choice,
    # no sliding windows, MagCache; update_default_settings starts step skipping at 20% and gives
    # the i2v models a start image ("S").
    **dict.fromkeys(("k5_lite_t2v", "k5_pro_t2v"), _K5),
    **dict.fromkeys(("stable_audio3_small", "stable_audio3_medium"), _SA3),
    **dict.fromkeys(("ace_step_v1_5", "ace_step_v1_5_xl"), _ACE15),
    **dict.fromkeys(
        ("k5_lite_i2v", "k5_pro_i2v"), replace(_K5, factory={**_K5.factory, "image_prompt_type": "S"})
    ),
}
# WanFarm's own models (tiny ones, LTX-Video 2B): no WanGP model to follow; every applied key counts.
NATIVE = ModelFacts(wangp=False)
# models/ltx2/ltx2_handler.py: LTX-2 takes two guidance "phases" that are render stages
# (ltx_pipelines/ti2vid_two_stages.py: skip_stage_2 when guidance_phases <= 1, the first stage at
# half size otherwise); its dev defaults (_default_dev_settings, update_default_settings) and the
# sliding windows, soundtrack, modality guidance (alt_guidance_scale) and rescale (alt_scale) it reads.
_LTX2_STAGES = (
    "WanGP renders LTX-2 in two stages (the first at half size, then a x2 latent upsampler and a "
    "refining pass with its distilled LoRA)"
)
_LTX2 = ModelFacts(
    guidance_phases=2,
    flow_shift=False,
    sliding_window=True,
    alt_guidance=True,
    second_stage=_LTX2_STAGES,
    audio_follows_guidance=True,
    guidance_passes=True,
    factory={
        "guidance_phases": 2,
        "sliding_window_size": 481,
        "sliding_window_overlap": 17,
        "denoising_strength": 1.0,
        "masking_strength": 0,
        "perturbation_start_perc": 0,
        "perturbation_end_perc": 100,
        "sample_solver": "euler",
        # defaults/ltx2_19B.json: LTX-2's own guidance (audio CFG 7, modality 3, rescale 0.7, STG
        # at block 29).
        "guidance_scale": 3.0,
        "audio_guidance_scale": 7.0,
        "alt_guidance_scale": 3.0,
        "alt_scale": 0.7,
        "perturbation_switch": 2,
        "perturbation_layers": [29],
        "num_inference_steps": 40,
        "video_length": 241,
    },
)
# The 22B (LTX-2.3) dev defaults run WanGP's distilled sampler: 8 steps at guidance 1, no extra
# guidance.
_LTX2_22B = replace(
    _LTX2,
    samplers=("distilled_8_steps", "euler", "res2s"),
    factory={
        **_LTX2.factory,
        "perturbation_layers": [28],
        "guidance_scale": 1.0,
        "audio_guidance_scale": 1.0,
        "alt_guidance_scale": 1.0,
        "alt_scale": 0.0,
        "perturbation_switch": 0,
        "num_inference_steps": 8,
        "video_length": 121,
        "resolution": "1280x720",
        "sample_solver": "distilled_8_steps",
    },
)
MODEL_FACTS |= {"ltx2_19B": _LTX2, "ltx2_22B": _LTX2_22B}


def model_facts(wangp_model_types: Iterable[str]) -> ModelFacts:
    """The facts of the first WanGP model_type a catalogue model answers to; NATIVE when none."""
    for model_type in wangp_model_types:
        if model_type in MODEL_FACTS:
            return MODEL_FACTS[model_type]
    return NATIVE


def refusals(reading: Reading, handled: frozenset[str] = frozenset()) -> list[str]:
    """One "key: value is not supported by WanFarm yet: ..." line per NOOP_ONLY key that would do
    something here, given or (at WanGP's default for the model) missing. Keys in `handled` are a
    post-processor's (processing.plugins), accepted or refused there."""
    problems = []
    unsettled = reading.facts.unsettled
    for row in _NOOP_ROWS:
        given = reading.given.get(row.key) is not None
        if row.key in handled or not (given or row.key in unsettled):
            continue
        value = reading.get(row.key)
        if row.noop.test(value, reading):
            continue
        shown = _show(value) + ("" if given else f" ({_default_of(reading)})")
        problems.append(
            f"{row.key}: {shown} is not supported by WanFarm yet: {row.does}; accepted: {row.noop.words}"
        )
    return problems


@dataclass(frozen=True)
class _NoOpRow:
    key: str
    does: str
    noop: NoOp


_NOOP_ROWS = tuple(_NoOpRow(row.key, row.does, row.noop) for row in _ROWS if row.noop is not None)


def _unsettled_keys(facts: ModelFacts) -> frozenset[str]:
    return frozenset(
        row.key
        for row in _ROWS
        # A missing key that only matters while another is on is not reported: that other one is
        # refused, and saying what to change there is enough.
        if row.noop is not None
        and row.gate is None
        and not (row.noop.by_value is not None and row.noop.by_value(facts.factory.get(row.key, row.default)))
    )


def _default_of(reading: Reading) -> str:
    return f"WanGP's default for {reading.model_type}" if reading.facts.wangp else "WanGP's default"


def ignored(reading: Reading) -> list[str]:
    """A warning per applied key that this model does not read (WanGP ignores it too) given at a
    value other than WanGP's default for the model: it asks for something that will not happen."""
    warnings = []
    for key, reason in _unread(reading).items():
        value = reading.given.get(key)
        default = reading.facts.factory.get(key, KEYS[key].default)
        if value is not None and not same_value(value, default):
            warnings.append(f"{key}: {_show(value)} is not used: {reason}")
    return warnings


def _unread(reading: Reading) -> dict[str, str]:
    facts, model = reading.facts, reading.model_type
    reasons = {}
    if not facts.embedded_guidance:
        reasons["embedded_guidance_scale"] = f"{model} has no embedded guidance"
    if facts.wangp and facts.guidance_phases == 0:
        instead = "; its guidance is embedded_guidance_scale" if facts.embedded_guidance else ""
        reasons["guidance_scale"] = f"WanGP reads no guidance_scale for {model}{instead}"
    if facts.wangp and not facts.flow_shift:
        reasons["flow_shift"] = f"WanGP reads no flow_shift for {model}"
    if facts.wangp and reading.video:
        reasons["batch_size"] = "WanGP renders one video a call; repeat_generation renders more"
    if facts.wangp and not facts.step_caches:
        reasons["skip_steps_cache_type"] = f"WanGP offers no step skipping for {model}"
    if facts.control_net and "V" not in reading.letters("video_prompt_type"):
        # Z-Image ControlNet: WanGP drops the control image without V (validate_settings).
        reasons["image_guide"] = "the control image is read only with V in video_prompt_type"
    return reasons


def counts() -> dict[KeyClass, int]:
    """How many keys each class holds."""
    return {kind: sum(row.kind is kind for row in _ROWS) for kind in KeyClass}
