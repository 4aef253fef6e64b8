"""ACE-Step 1.5 (diffusers' AceStepPipeline) as WanGP renders it without its 5 Hz language model.

Read from deepbeepmeep/Wan2GP@8681e9f7: models/TTS/ace_step_handler.py (settings, defaults, the
custom_settings checks of validate_generative_settings) and models/TTS/ace_step15/
pipeline_ace_step15.py (generate and _sample_latents: what the DiT-only path renders). There:

- `prompt` is the lyrics ("[inst]" / "[instrumental]" mean "[Instrumental]", sung in "unknown"),
  `alt_prompt` the music caption; custom_settings give bpm, keyscale, timesignature and language,
  which default to 120, "C major", 2 and "unknown" (model_mode 0: nothing is inferred);
- the 8 steps of its turbo schedule run whatever num_inference_steps says (lock_inference_steps),
  at the shift nearest to flow_shift among 1, 2 and 3 (WanGP passes flow_shift as `shift`);
- no guidance (the turbo checkpoints are guidance-distilled); the waveform is written as decoded
  (on a CUDA card in crossfaded tiles of 20 to 80 s, by its memory), without the loudness
  normalisation AceStepPipeline applies to its own "np" output: so the call here asks for
  latents, which models.audio_call decodes (decode_song).

Light on purpose: settings read it on commands that must not load torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from models.preset import ModelPreset
from models.song import DEFAULT_LANGUAGE, Song

if TYPE_CHECKING:
    import torch

    from models.request import GenerationRequest
    from models.soundtrack import Soundtrack

PIPELINE = "AceStepPipeline"
# A definition's keys: the transformer config it loads, and the 5 Hz LM's files (then its folder).
VARIANT_KEY = "ace_step15_transformer_variant"
LM_KEY = "text_encoder_URLs"
MODEL_KEYS = frozenset({VARIANT_KEY, "text_encoder_folder"})  # the LM's folder: unread without the LM
# WanGP's ACE-Step 1.5 architectures and the variant the catalogue's model of each is.
VARIANTS = {"ace_step_v1_5": "turbo", "ace_step_v1_5_xl": "xl_turbo"}
STEPS = 8  # WanGP's fixed turbo schedules (_build_t_schedule)
SHIFTS = (1.0, 2.0, 3.0)
BPM_RANGE = (30, 300)
TIMESIGNATURES = (2, 3, 4, 6)
# The language codes WanGP accepts (ACE_STEP15_VALID_LANGUAGES).
_CODES = (
    "ar az bg bn ca cs da de el en es fa fi fr he hi hr ht hu id is it ja ko la lt ms ne nl no pa pl "
    "pt ro ru sa sk sr sv sw ta te th tl tr uk ur vi yue zh unknown"
)
LANGUAGES = frozenset(_CODES.split())
_INSTRUMENTAL = {"[inst]", "[instrumental]"}
# WanGP's spellings of the custom settings (ACE_STEP15_SETTING_ALIASES).
_ALIASES = {"key_scale": "keyscale", "time_signature": "timesignature", "lang": "language"}
_ALIASES |= {"language_code": "language"}


def is_ace_step(preset: ModelPreset) -> bool:
    return preset.pipeline == PIPELINE


def definition_problem(architecture: str, model_keys: frozenset[str], variant: object) -> str:
    """Why a WanGP definition of an ACE-Step 1.5 architecture renders other than the catalogue's
    model: its 5 Hz LM, or another transformer variant (base, sft, shifted turbos); "" if none."""
    if LM_KEY in model_keys:
        return (
            f"model setting {LM_KEY} (ACE-Step 1.5's 5 Hz language model, which writes the song's audio "
            "codes and metadata before the DiT renders them) is not supported yet: diffusers' "
            "AceStepPipeline has no such planner"
        )
    wanted = VARIANTS[architecture]
    if variant is not None and str(variant).strip().lower() not in ("", wanted):
        return f"model setting {VARIANT_KEY} {variant!r} is not supported yet: the catalogue holds {wanted!r}"
    return ""


def song(prompt: str, given: Mapping[str, object], default_caption: str, problems: list[str]) -> Song:
    """The song a settings object asks for: its caption (alt_prompt, the model's own when left out)
    and custom_settings checked as WanGP checks them; each bad value appends a problem."""
    caption = given.get("alt_prompt")
    custom = given.get("custom_settings")
    values: dict[str, object] = {}
    if custom is not None and not isinstance(custom, Mapping):
        problems.append("custom_settings: must be an object (bpm, keyscale, timesignature, language)")
    elif custom:
        values = {_ALIASES.get(_name(key), _name(key)): value for key, value in custom.items()}
    chosen = Song(caption=_caption(caption if isinstance(caption, str) else default_caption))
    for key, parse in (("bpm", _bpm), ("keyscale", _keyscale), ("timesignature", _timesignature)):
        value = values.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        parsed, problem = parse(value)
        if problem:
            problems.append(f"custom_settings: {key} {value!r} is not valid: {problem}")
        elif parsed is not None:
            chosen = _with(chosen, key, parsed)
    language = values.get("language")
    if isinstance(language, str) and language.strip():
        code = language.strip().lower()
        if code not in LANGUAGES:
            problems.append(f"custom_settings: language {language!r} is not one of ACE-Step's codes")
        chosen = _with(chosen, "language", code)
    if prompt.strip().lower() in _INSTRUMENTAL:
        chosen = _with(chosen, "language", DEFAULT_LANGUAGE)  # WanGP sings no language then
    return chosen


def problems(prompt: str, given: Mapping[str, object], preset: ModelPreset) -> list[str]:
    """What WanGP would refuse, or render otherwise than asked, for ACE-Step: empty lyrics, steps
    other than its fixed 8, a duration that is not whole seconds, the LM's model modes, LoRAs, more
    than one song a call."""
    found = []
    if not prompt.strip():
        found.append("prompt: ACE-Step reads the prompt as the lyrics, and WanGP refuses empty ones")
    steps = given.get("num_inference_steps")
    if steps is not None and steps != STEPS:
        found.append(
            f"num_inference_steps: {steps} is not supported by WanFarm yet: WanGP runs {preset.id}'s "
            f"fixed {STEPS}-step turbo schedule whatever the setting; accepted: {STEPS}"
        )
    seconds = given.get("duration_seconds")
    if seconds == 0:
        found.append("duration_seconds: 0 renders 20 s in WanGP's ACE-Step; give the seconds (5 to 360)")
    elif isinstance(seconds, float) and not seconds.is_integer():
        # WanGP rounds the latent length and writes ceil(seconds) into the prompt; whole seconds
        # render alike here.
        found.append(
            f"duration_seconds: {seconds:g} is not supported by WanFarm yet: accepted: whole seconds"
        )
    if given.get("model_mode") not in (None, 0):
        found.append(
            f"model_mode: {given['model_mode']!r} is not supported by WanFarm yet: ACE-Step 1.5's modes 1 "
            "to 4 have its 5 Hz LM infer the song's metadata, caption or duration; accepted: 0"
        )
    if given.get("activated_loras"):
        found.append(
            "activated_loras: LoRAs on ACE-Step are not supported by WanFarm yet: WanGP maps them onto "
            "its own module names, which the farm does not read for AceStepPipeline; accepted: none"
        )
    if given.get("batch_size", 1) != 1:
        found.append(
            "batch_size: WanGP renders one ACE-Step song a call; accepted: 1 (repeat_generation renders more)"
        )
    return found


def shift(flow_shift: float | None) -> float:
    """The schedule's shift WanGP runs for a flow_shift: the nearest of 1, 2 and 3."""
    wanted = SHIFTS[-1] if flow_shift is None else flow_shift
    return min(SHIFTS, key=lambda value: abs(value - wanted))


def ace_kwargs(request: GenerationRequest, generator: torch.Generator) -> dict[str, Any]:
    """Keyword arguments of AceStepPipeline's call: lyrics, caption and metadata, the 8 steps at
    WanGP's shift, latents out (decode_song decodes them)."""
    chosen = request.song or Song(caption="")
    lyrics = "[Instrumental]" if request.prompt.strip().lower() in _INSTRUMENTAL else request.prompt
    return {
        "prompt": chosen.caption,
        "lyrics": lyrics,
        "audio_duration": request.duration_seconds,
        "vocal_language": chosen.language,
        "bpm": chosen.bpm,
        "keyscale": chosen.keyscale,
        "timesignature": str(chosen.timesignature),
        "num_inference_steps": STEPS,
        "shift": shift(request.flow_shift),
        "guidance_scale": 1.0,
        "generator": generator,
        "output_type": "latent",
    }


def decode_song(pipe: Any, result: Any, preset: ModelPreset) -> list[Soundtrack]:
    """The waveforms of AceStepPipeline's latents, decoded by its VAE as WanGP decodes them (in
    crossfaded tiles on a CUDA card, tile_seconds), unnormalised as WanGP writes them."""
    import numpy as np
    import torch

    from models.soundtrack import Soundtrack

    rule = preset.audio
    assert rule is not None
    latents = result.audios.transpose(1, 2).to(pipe.vae.dtype)  # (outputs, channels, frames)
    memory_gb = None
    if latents.device.type == "cuda":
        memory_gb = torch.cuda.get_device_properties(latents.device).total_memory / 2**30
    seconds = tile_seconds(memory_gb)
    tile = None if seconds is None else round(seconds * rule.sample_rate / rule.samples_per_latent)
    with torch.inference_mode():
        audio = decode_tiles(pipe.vae, latents, tile, rule.samples_per_latent).float().cpu().numpy()
    return [Soundtrack(np.clip(one, -1.0, 1.0), rule.sample_rate) for one in audio]


def tile_seconds(card_memory_gb: float | None) -> float | None:
    """The seconds of audio WanGP decodes at once on a card of that memory (its
    _get_vae_temporal_tile_seconds, at its default VAE tiling): 80 from 24 GB, 40 from 12, else 20;
    None without a CUDA card (one decode)."""
    if card_memory_gb is None:
        return None
    return 80.0 if card_memory_gb >= 24 else 40.0 if card_memory_gb >= 12 else 20.0


def decode_tiles(vae: Any, latents: Any, tile: int | None, hop: int) -> Any:
    """`latents` (outputs, channels, frames) decoded by `vae` as WanGP's _decode_latents_tiled does:
    at once when `tile` is None or covers them; else windows of `tile` frames a quarter of which
    overlap the previous one, each window's overlap faded in linearly over the audio before it."""
    frames = latents.shape[-1]
    if tile is None or frames <= tile:
        return vae.decode(latents).sample
    import torch

    overlap = round(tile * 0.25)
    out = None
    for start in range(0, frames, tile - overlap):
        end = min(start + tile, frames)
        chunk = vae.decode(latents[..., start:end]).sample
        size = (end - start) * hop
        chunk = torch.nn.functional.pad(chunk[..., :size], (0, max(0, size - chunk.shape[-1])))
        if out is None:
            out = chunk.new_zeros((*chunk.shape[:2], frames * hop))
        first = start * hop
        fade = min(overlap * hop, first, size)
        if fade:
            ramp = torch.linspace(0.0, 1.0, fade, device=chunk.device, dtype=chunk.dtype)
            out[..., first : first + fade] = (
                out[..., first : first + fade] * (1 - ramp) + chunk[..., :fade] * ramp
            )
        out[..., first + fade : first + size] = chunk[..., fade:]
    return out


def _caption(text: str) -> str:
    # WanGP reads alt_prompt as one unit (prompt_parser.split_prompt_units, mode "FG"): its "#"
    # comment lines dropped, each line's trailing spaces and the whole text's ends trimmed.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines if not line.strip().startswith("#")).strip()


def _name(key: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(key).strip().lower()).strip("_")


def _with(chosen: Song, key: str, value: object) -> Song:
    return Song(**({**chosen.__dict__, key: value}))


def _bpm(value: object) -> tuple[int | None, str]:
    hint = f"an integer from {BPM_RANGE[0]} to {BPM_RANGE[1]}"
    number = _whole(value)
    if number is None or not BPM_RANGE[0] <= number <= BPM_RANGE[1]:
        return None, hint
    return number, ""


def _timesignature(value: object) -> tuple[int | None, str]:
    hint = "one of 2, 3, 4, 6 (or 2/4, 3/4, 4/4, 6/8)"
    if isinstance(value, str):
        compact = value.replace(" ", "").lower()
        if compact in ("n/a", "na", "none"):
            return None, ""
        value = compact.split("/", 1)[0] if compact in ("2/4", "3/4", "4/4", "6/8") else compact
    number = _whole(value)
    if number not in TIMESIGNATURES:
        return None, hint
    return number, ""


def _keyscale(value: object) -> tuple[str | None, str]:
    hint = "a note A-G, an optional # or b, then major or minor (or Am, F#m)"
    text = str(value).strip().replace("\u266f", "#").replace("\u266d", "b")
    if text.lower() in ("n/a", "na", "none"):
        return None, ""
    if short := re.fullmatch(r"([A-Ga-g])\s*([#b]?)\s*[mM]", text):
        return f"{short.group(1).upper()}{short.group(2)} minor", ""
    full = re.fullmatch(r"([A-Ga-g])\s*([#b]?)\s*(major|minor|maj|min)", text, flags=re.IGNORECASE)
    if not full:
        return None, hint
    mode = {"maj": "major", "min": "minor"}.get(full.group(3).lower(), full.group(3).lower())
    return f"{full.group(1).upper()}{full.group(2)} {mode}", ""


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None
