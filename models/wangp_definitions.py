"""WanGP model definitions (its defaults/ and finetunes/ JSON files) read as catalogue models.

A definition names an architecture, its weight files, modules and built-in LoRAs it merges, and its
default settings. Those whose architecture the farm has a pipeline for, with the very weights of
the catalogue's model of that architecture and nothing merged in, become a ModelPreset derived from
that model; every other one is refused with the reason. Pure: no torch, and no file read but its
own table of the catalogue models' WanGP weight files (wangp_base_weights.json).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models import ace_step_call, ltx2_stages, z_image_control
from models.kandinsky5_layout import OVERRIDES_KEY as K5_OVERRIDES
from models.kandinsky5_layout import overrides_problem as k5_overrides_problem
from models.model_attention import rules_problem
from models.prequantized import Kind, kind_of_name
from models.preset import Component, Role
from models.unserved_architectures import why_not
from models.vace_modules import blocks_twice_problem, module_problem
from models.wangp_keys import KEYS, Reading, model_facts, refusals, same_value
from processing import plugins

if TYPE_CHECKING:
    from models.preset import ModelPreset

# WanGP architecture -> the catalogue model with that network and pipeline. WanGP's handlers
# (models/*/..._handler.py query_supported_types, query_family_maps) list more architectures per
# family; the others (vace, multitalk, alpha, lynx, phantom, hunyuan_1_5, flux2, ...) add modules or
# are other networks, which the farm has no pipeline for.
ARCHITECTURES: dict[str, str] = {
    "t2v": "wan2.1-t2v-14b",
    "t2v_1.3B": "wan2.1-t2v-1.3b",
    "i2v": "wan2.1-i2v-14b-480p",
    "flf2v_720p": "wan2.1-flf2v-14b-720p",
    "t2v_2_2": "wan2.2-t2v-a14b",
    "i2v_2_2": "wan2.2-i2v-a14b",
    "ti2v_2_2": "wan2.2-ti2v-5b",
    "hunyuan": "hunyuan-video-t2v-13b",
    # HunyuanVideo I2V: the token_replace release (models/hyvideo/hunyuan.py 'HYVideo-T/2').
    "hunyuan_i2v": "hunyuan-video-i2v-13b",
    # HunyuanVideo 1.5: the 720p models are the architectures' own (WanGP's base model types); the
    # 480p ones are catalogue models of their own.
    "hunyuan_1_5_t2v": "hunyuan-video-1.5-t2v-720p",
    "hunyuan_1_5_i2v": "hunyuan-video-1.5-i2v-720p",
    "ltxv_13B": "ltx-video-13b",
    "flux": "flux.1-dev",
    "flux_schnell": "flux.1-schnell",
    "flux_dev_kontext": "flux.1-kontext-dev",
    "flux2_dev": "flux.2-dev",
    "flux2_klein_4b": "flux.2-klein-4b",
    "flux2_klein_9b": "flux.2-klein-9b",
    "qwen_image_20B": "qwen-image",
    "qwen_image_edit_20B": "qwen-image-edit",
    "qwen_image_edit_plus_20B": "qwen-image-edit-2509",
    "qwen_image_edit_plus2_20B": "qwen-image-edit-2511",
    "z_image": "z-image-turbo",
    "z_image_base": "z-image",
    # Z-Image Turbo's Fun ControlNets (models/z_image/z_image_handler.py): WanGP's module beside
    # Z-Image Turbo's folder, as ZImageControlNetPipeline (models.z_image_control).
    "z_image_control": "z-image-turbo-control",
    "z_image_control2": "z-image-turbo-control-2",
    "z_image_control2_1": "z-image-turbo-control-2.1",
    "vace_1.3B": "wan2.1-vace-1.3b",
    "vace_14B": "wan2.1-vace-14b",
    "vace_14B_2_2": "wan2.2-vace-fun-a14b",
    "sky_df_1.3B": "skyreels-v2-df-1.3b-540p",
    "sky_df_14B": "skyreels-v2-df-14b-540p",
    "chrono_edit": "chronoedit-14b",
    "lucy_edit": "lucy-edit-dev",
    # Wan 2.1 Fun InP 14B: WanGP runs it as Wan 2.1 I2V (same network and call), from its own file.
    "fun_inp": "wan2.1-i2v-14b-480p",
    # Fun InP 1.3B: the same call on the 1.3B network with Wan 2.1 I2V's image branch.
    "fun_inp_1.3B": "wan2.1-fun-inp-1.3b",
    # Kandinsky 5: Kandinsky Lab's Diffusers repos of the 5 s SFT models (Lite I2V has none).
    "k5_lite_t2v": "kandinsky5-lite-t2v",
    "k5_pro_t2v": "kandinsky5-pro-t2v",
    "k5_pro_i2v": "kandinsky5-pro-i2v",
    # Lite I2V: WanGP's file over Lite T2V's folder (models/presets/kandinsky5-lite-i2v.json).
    "k5_lite_i2v": "kandinsky5-lite-i2v",
    # LTX-2 (models/ltx2/ltx2_handler.py): the 19B (2.0) and the 22B (2.3); LTX-2.5 reads Gemma 4
    # and a reshaped transformer, which the catalogue has no preset for.
    "ltx2_19B": "ltx-2-19b",
    "ltx2_22B": "ltx-2.3-22b",
    # Krea 2 (models/krea2/krea2_handler.py): the base and the 8-step distilled checkpoints.
    "krea2_raw": "krea2-raw",
    "krea2_turbo": "krea2-turbo",
    # Ideogram 4 (models/ideogram4/ideogram4_handler.py): conditional and unconditional transformers
    # (URLs, URLs2). TurboTime (conditional only, a built-in LoRA) has no preset.
    "ideogram4": "ideogram-4",
    # Chroma (models/flux/flux_handler.py, flux-chroma): Chroma1-HD. Chroma Radiance (pixel space,
    # no VAE) has no diffusers pipeline in this stack.
    "flux_chroma": "chroma1-hd",
    # Stable Audio 3 (models/TTS/stable_audio3_handler.py): Small is the music model by default
    # (stable_audio3_model_id "small-music"); Medium.
    "stable_audio3_small": "stable-audio-3-small-music",
    "stable_audio3_medium": "stable-audio-3-medium",
    # ACE-Step 1.5 Turbo 2B and XL Turbo 4B (models/TTS/ace_step_handler.py) without the 5 Hz LM;
    # ACE-Step v1 (3.5B, its DCAE and vocoder) is another network with no diffusers pipeline.
    "ace_step_v1_5": "ace-step-1.5-turbo",
    "ace_step_v1_5_xl": "ace-step-1.5-xl-turbo",
}


# Stable Audio 3's model key naming its checkpoint (models/TTS/stable_audio3_handler.py _model_id),
# and the values WanGP knows. WanGP reads it for its prompt enhancer's instructions only (a
# definition's weights are its URLs: Small SFX's own file, loaded by models.sa3_layout).
SA3_MODEL_ID = "stable_audio3_model_id"
SA3_SERVED = ("small-music", "small-sfx", "medium")


# WanGP's weight file names (URLs, URLs2) of the catalogue models whose Diffusers repo holds the
# same weights, in a data file beside this one: a definition naming these files renders the
# catalogue's weights.
def _same_weights() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    table = json.loads((Path(__file__).parent / "wangp_base_weights.json").read_text())
    return {
        model: (frozenset(files["URLs"]), frozenset(files["URLs2"]))
        for model, files in table.items()
        if not model.startswith("_")
    }


_SAME_WEIGHTS = _same_weights()

# Keys of a definition's model block that change nothing rendered: WanGP's menus and folders, its
# load-time quantization (memory only), files it downloads beside the model, the image-output flag.
_INERT_MODEL_KEYS = frozenset(
    {
        "name",
        "description",
        "author",
        "group",
        "visible",
        "settings_dir",
        "profiles_dir",
        "profile_dirs",
        "auto_quantize",
        "preload_URLs",
        "image_outputs",
        "resolutions",
        "xresolutions",
        "video_prompt_enhancer_instructions",
    }
)
# Settings that a catalogue preset's Defaults carries; the guidance is embedded_guidance_scale on
# models whose WanGP guidance is embedded (FLUX dev, HunyuanVideo).
_DEFAULTS_KEYS = ("resolution", "video_length", "num_inference_steps", "flow_shift", "sample_solver")
# A model's default prompt is a suggestion shown in WanGP's form; a settings file always carries
# its own prompt.
_FORM_ONLY_SETTINGS = frozenset({"prompt"})


# How deep a chain of definitions naming another's files is followed (WanGP stops at 10).
_MAX_REFERENCES = 10


class DefinitionError(ValueError):
    """A file that is not a WanGP model definition."""


@dataclass(frozen=True)
class Weights:
    """The weight files of a definition: their URLs (or file names), or the WanGP model type whose
    files it reuses."""

    urls: tuple[str, ...] = ()
    same_as: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(_file_name(url) for url in self.urls)

    def describe(self) -> str:
        return f"the weights of {self.same_as!r}" if self.same_as else ", ".join(self.files)


@dataclass(frozen=True)
class WangpDefinition:
    """One WanGP model definition, its prose left out."""

    id: str  # the file's stem: WanGP's model_type
    architecture: str
    urls: Weights
    urls2: Weights  # the second (low-noise) expert of Wan 2.2 models
    modules: tuple[str, ...]  # module file names, or WanGP model types whose modules it merges
    loras: Weights  # built-in LoRAs: their URLs (or file names), or the model type whose LoRAs it takes
    model_keys: frozenset[str]  # every key of its model block
    settings: Mapping[str, object]  # its default settings: the top-level keys beside "model"
    # Its model block's loras_multipliers: WanGP's entry per built-in LoRA ("1", "0;1"), or the
    # model type whose multipliers it takes; a LoRA without one runs at 1.
    lora_multipliers: tuple[str, ...] | str = ()
    attention: object = None  # its `attention` key: a kernel per card condition (models.model_attention)
    # Kandinsky 5's k5_config_overrides: merged into its YAML config (models.kandinsky5_layout).
    k5_config_overrides: object = None
    sa3_model_id: object = None  # Stable Audio 3's checkpoint (stable_audio3_model_id)
    ltx2_keys: Mapping[str, object] = dataclasses.field(default_factory=dict)  # ltx2_stages.MODEL_KEYS
    ace_variant: object = None  # ACE-Step 1.5's transformer config (ace_step15_transformer_variant)
    # Each module's files (its precisions), beside `modules`: () for one named by a model type
    # until with_references takes that definition's one module list (WanGP's "_list").
    module_files: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What the farm serves for one definition: a preset, or None and the reason."""

    id: str
    architecture: str
    preset: ModelPreset | None
    reason: str = ""
    catalogue_own: bool = False  # the definition of a model the catalogue already holds


def parse_definition(model_id: str, data: object) -> WangpDefinition:
    """Read a decoded definition file; DefinitionError when it has no model block or architecture."""
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise DefinitionError(f"{model_id}: a WanGP definition is a JSON object with a 'model' object")
    model = data["model"]
    architecture = model.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise DefinitionError(f"{model_id}: its model block names no architecture")
    return WangpDefinition(
        id=model_id,
        architecture=architecture,
        urls=_weights(model.get("URLs")),
        urls2=_weights(model.get("URLs2")),
        modules=_names(model.get("modules")),
        module_files=_module_files(model.get("modules")),
        loras=_weights(model.get("loras")),
        lora_multipliers=_multipliers(model.get("loras_multipliers")),
        model_keys=frozenset(model),
        settings={key: value for key, value in data.items() if key != "model"},
        attention=model.get("attention"),
        k5_config_overrides=model.get(K5_OVERRIDES),
        sa3_model_id=model.get(SA3_MODEL_ID),
        ltx2_keys={key: model[key] for key in ltx2_stages.MODEL_KEYS if key in model},
        ace_variant=model.get(ace_step_call.VARIANT_KEY),
    )


def decide(definition: WangpDefinition, presets: Mapping[str, ModelPreset]) -> Verdict:
    """The preset the farm serves for `definition` among the catalogue's `presets`, or the reason
    it cannot: an architecture without a pipeline, merged modules or LoRAs, model keys that change
    the render, weights other than the catalogue's, defaults a preset cannot carry."""
    own = next(
        (p for p in presets.values() if not p.tiny and definition.id in p.wangp_model_types),
        None,
    )
    base = own or presets.get(ARCHITECTURES.get(definition.architecture, "")) or _tiny(definition, presets)
    if base is None:
        return _refused(definition, why_not(definition.architecture))
    if own is not None:
        # The catalogue's preset follows WanGP's own definition of this model (its config and
        # defaults, and its weights where the repo differs, said in the preset): only merged parts,
        # or files other than those the preset is known to hold, would make another model.
        reason = _merged(definition) or (_weights_problem(definition, own) if own.id in _SAME_WEIGHTS else "")
        reason = reason or _stages_problem(definition, own)
        if reason:
            return _refused(definition, reason)
        return Verdict(definition.id, definition.architecture, own, "", catalogue_own=True)
    reason = _merged(definition) or _weights_problem(definition, base)
    reason = reason or _model_keys_problem(definition) or _stages_problem(definition, base)
    reason = reason or _settings_problem(definition, base)
    if reason:
        return _refused(definition, reason)
    derived = _derived(definition, base)
    if z_image_control.is_control(derived):  # its module loads beside the folder: nothing merged
        if reason := z_image_control.weights_problem(own_weights(derived)):
            return _refused(definition, reason)
        return Verdict(definition.id, definition.architecture, derived)
    if reason := _modules_over_problem(definition, derived):
        return _refused(definition, reason)
    if not own_weights(derived):
        # Over its backbone's files: the base's folder holds the module's blocks already.
        derived = derived.model_copy(update={"wangp_modules": []})
    return Verdict(definition.id, definition.architecture, derived)


def _modules_over_problem(definition: WangpDefinition, preset: ModelPreset) -> str:
    # The VACE module is merged into the transformers loaded from the definition's own files; a
    # transformer the base's folder supplies already holds VACE blocks (models.vace_modules).
    if not definition.modules:
        return ""
    experts = (1, 2) if preset.wangp_weights2 else (1,)
    own = [own_weights(preset, n) for n in experts]
    if reason := blocks_twice_problem(definition.architecture, [bool(files) for files in own]):
        return reason
    if not any(own):
        return ""
    from models.single_file import INT8_TOKEN, SingleFileRefused, check_loadable

    # The merge reads plain tensors: each file loaded, the module's too, is its list's first.
    for files in (*own, *preset.wangp_modules):
        first = _file_name(files[0]) if files else ""
        if INT8_TOKEN in first.lower():
            return (
                f"{first}: an int8 quanto file listed first: the VACE module merges into plain "
                "tensors, so only a bf16/fp16 file listed first loads"
            )
        if (kind := kind_of_name(first)) is not Kind.PLAIN:  # refused at load: say so now
            return (
                f"with the VACE module merged in: {first}: a prequantized {kind.value} file; modules "
                "merged into a prequantized file are not supported yet"
            )
        try:
            check_loadable(files, int8=False)
        except SingleFileRefused as error:
            return f"with the VACE module merged in: {error}"
    return ""


def _stages_problem(definition: WangpDefinition, base: ModelPreset) -> str:
    # A model whose second guidance phase is a second render stage (LTX-2, models.ltx2_stages):
    # the stages render, and so must the defaults a file leaving keys out reads, on the
    # catalogue's own model too (ltx2_19B's LTX-2 guidance passes).
    if not model_facts(base.wangp_model_types).second_stage:
        return ""
    return _settings_problem(definition, base)


def with_references(definitions: Mapping[str, WangpDefinition]) -> dict[str, WangpDefinition]:
    """Each definition with the URLs, URLs2, loras and loras_multipliers it takes from another
    definition of `definitions` (WanGP's get_model_recursive_prop: a model type in place of a
    list, followed to the list) filled in; one naming a definition not given keeps the name."""

    def follow(model_id: str, field: str, seen: tuple[str, ...] = ()) -> object:
        value = getattr(definitions[model_id], field)
        ref = value.same_as if isinstance(value, Weights) else value if isinstance(value, str) else ""
        if not ref or ref not in definitions or ref in seen or len(seen) > _MAX_REFERENCES:
            return value
        return follow(ref, field, (*seen, model_id))

    resolved = {}
    for model_id, definition in definitions.items():
        changes: dict[str, object] = {}
        for field in ("urls", "urls2", "loras"):
            weights = getattr(definition, field)
            target = follow(model_id, field)
            if weights.same_as and isinstance(target, Weights) and target.urls:
                changes[field] = Weights(urls=target.urls, same_as=weights.same_as)
        if isinstance(definition.lora_multipliers, str):
            target = follow(model_id, "lora_multipliers")
            if not isinstance(target, str):
                changes["lora_multipliers"] = target
        if not all(definition.module_files):
            changes["module_files"] = _followed_modules(definitions, definition)
        resolved[model_id] = dataclasses.replace(definition, **changes) if changes else definition  # type: ignore[arg-type]
    return resolved


def _followed_modules(
    definitions: Mapping[str, WangpDefinition], definition: WangpDefinition
) -> tuple[tuple[str, ...], ...]:
    # A module named by model type is that definition's one module (WanGP's get_model_recursive_prop
    # with "_list"), itself maybe named by model type; () when not given or not one module.
    found = []
    for name, files in zip(definition.modules, definition.module_files, strict=True):
        seen: tuple[str, ...] = ()
        while not files and name in definitions and name not in seen and len(seen) <= _MAX_REFERENCES:
            target = definitions[name]
            if len(target.modules) != 1:
                break
            seen, name, files = (*seen, name), target.modules[0], target.module_files[0]
        found.append(files)
    return tuple(found)


def _module_files(value: object) -> tuple[tuple[str, ...], ...]:
    if isinstance(value, str):
        return ((),)
    if not isinstance(value, list):
        return ()
    return tuple(tuple(str(url) for url in item) if isinstance(item, list) and item else () for item in value)


def _multipliers(value: object) -> tuple[str, ...] | str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return ()


def _weights(value: object) -> Weights:
    if isinstance(value, str):
        return Weights(same_as=value)
    if isinstance(value, list):
        return Weights(urls=tuple(item for item in value if isinstance(item, str)))
    return Weights()


def _names(value: object) -> tuple[str, ...]:
    # Modules are a list of model types, or of lists of URLs (one module in several precisions).
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        return ()
    return tuple(_file_name(item[0] if isinstance(item, list) and item else str(item)) for item in value)


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _tiny(definition: WangpDefinition, presets: Mapping[str, ModelPreset]) -> ModelPreset | None:
    # A tiny model's id is an architecture of its own: definitions over it render on a CPU in seconds.
    preset = presets.get(definition.architecture)
    return preset if preset is not None and preset.tiny else None


def _refused(definition: WangpDefinition, reason: str) -> Verdict:
    return Verdict(definition.id, definition.architecture, None, reason)


def _merged(definition: WangpDefinition) -> str:
    # A merged module or LoRA changes the weights the base would render with: another model. The
    # VACE module over its own backbone is the VACE model its repo holds (models.vace_modules).
    # Z-Image's ControlNet module loads beside Turbo's folder (models.z_image_control).
    if definition.architecture in z_image_control.ARCHITECTURES:
        if reason := z_image_control.definition_problem(definition.architecture, definition.module_files):
            return reason
    elif reason := module_problem(
        definition.architecture, definition.modules, definition.urls.same_as, definition.module_files
    ):
        return reason
    if definition.loras.same_as and not definition.loras.urls:
        return f"built-in LoRAs of {definition.loras.same_as!r}: that definition is not given"
    if isinstance(definition.lora_multipliers, str):
        return f"built-in LoRA multipliers of {definition.lora_multipliers!r}: that definition is not given"
    return ""


def _weights_problem(definition: WangpDefinition, base: ModelPreset) -> str:
    urls, urls2 = _SAME_WEIGHTS.get(base.id, (frozenset(), frozenset()))
    if _is(definition.urls, urls, base) and _is(definition.urls2, urls2, base):
        return ""
    named = f"its weights ({definition.urls.describe() or 'none named'}) are not {base.id}'s"
    # Imported here: reading definitions must stay light for the commands that start without torch.
    from models.single_file import (
        SECOND_TRANSFORMERS,
        SINGLE_FILE_FAMILIES,
        SingleFileRefused,
        check_loadable,
        reads_int8,
    )

    # The families whose files load (models.single_file): their definitions render from the
    # files; one transformer per file, a Wan 2.2 A14B's low-noise expert (Ideogram 4's
    # unconditional transformer) named in URLs2.
    if base.family not in SINGLE_FILE_FAMILIES:
        return f"{named}: single-file weights not supported yet"
    if not definition.urls.urls or (definition.urls2.same_as and not definition.urls2.urls):
        return f"{named}: the files of a definition not given cannot be found"

    # Ideogram 4's second transformer (its unconditional one) is always there, in tiny too.
    second = SECOND_TRANSFORMERS.get(base.pipeline)
    if (bool(urls2) or second is not None) != bool(definition.urls2.urls):
        # Each expert needs its file: URLs2 exactly when the base has a low-noise expert.
        wanted = f"{base.id} has two experts" if urls2 else f"{base.id} has one transformer"
        wanted = f"{base.id} has its {second} too" if second else wanted
        return f"{named}: URLs2 ({definition.urls2.describe() or 'none'}) does not fit: {wanted}"

    try:
        for files in (definition.urls.urls, definition.urls2.urls):
            if files:
                check_loadable(files, int8=reads_int8(base))
    except SingleFileRefused as error:
        return f"{named}: {error}"
    return ""


def own_weights(preset: ModelPreset, expert: int = 1) -> tuple[str, ...]:
    """The URLs of a definition's own transformer files (`expert` 2: its low-noise expert's, URLs2),
    which the pipeline host loads as a single file over its base's folder; () where the preset
    renders its base's weights for that transformer."""
    urls = preset.wangp_weights if expert == 1 else preset.wangp_weights2
    if preset.derived_from is None or not urls:
        return ()
    base_files = _SAME_WEIGHTS.get(preset.derived_from, (frozenset(), frozenset()))[expert - 1]
    if {_file_name(url) for url in urls} <= base_files:
        return ()
    return tuple(urls)


def _is(weights: Weights, files: frozenset[str], base: ModelPreset) -> bool:
    # A Z-Image control model renders over Turbo's weights, which its definitions name as "z_image".
    over = (z_image_control.BACKBONE,) if z_image_control.is_control(base) else ()
    if weights.same_as in (*base.wangp_model_types, *over) and files:
        return True
    if weights.files:
        return set(weights.files) <= files
    return not files and not weights.same_as


def _model_keys_problem(definition: WangpDefinition) -> str:
    known = {
        "architecture",
        "URLs",
        "URLs2",
        "modules",
        "loras",
        "loras_multipliers",
        "attention",
        K5_OVERRIDES,
        SA3_MODEL_ID,
    } | _INERT_MODEL_KEYS
    if definition.architecture in ace_step_call.VARIANTS:
        if ace := ace_step_call.definition_problem(
            definition.architecture, definition.model_keys, definition.ace_variant
        ):
            return ace
        known |= ace_step_call.MODEL_KEYS
    if k5_problem := k5_overrides_problem(definition.k5_config_overrides):
        return f"model setting {k5_problem}"
    if definition.attention is not None and (problem := rules_problem(definition.attention)):
        return f"model setting attention: {problem}"
    if definition.sa3_model_id not in (None, *SA3_SERVED):
        # A value WanGP does not know: which checkpoint or instructions it would mean is not known.
        return f"model setting {SA3_MODEL_ID} {definition.sa3_model_id!r}: no catalogue model holds it yet"
    if definition.architecture in ltx2_stages.ARCHITECTURES:
        if ltx2 := ltx2_stages.model_keys_problem(definition.architecture, dict(definition.ltx2_keys)):
            return ltx2
        known |= ltx2_stages.MODEL_KEYS
    if "unified_solver" in definition.model_keys:
        # wgp's Z-Image runs TwinFlow's own sampler (models/z_image/unified_sampler.py) for it.
        return "model setting unified_solver (TwinFlow's unified sampler) is not supported yet"
    other = sorted(definition.model_keys - known)
    if other:
        return f"model setting(s) not supported yet: {', '.join(other)}"
    return ""


def _settings_problem(definition: WangpDefinition, base: ModelPreset) -> str:
    # Its defaults are what a file leaving keys out renders: one WanFarm cannot render (a key of
    # the table at a value that does something here) would refuse every such file.
    facts = model_facts(base.wangp_model_types)
    settings = {key: value for key, value in definition.settings.items() if key in KEYS}
    length = settings.get("video_length", base.defaults.video_length)
    guidance = settings.get(_guidance_key(base), base.defaults.guidance_scale)
    reading = Reading(
        model_type=definition.id,
        facts=facts,
        given=settings,
        applied={"video_length": length} | ({} if facts.embedded_guidance else {"guidance_scale": guidance}),
        video=base.output.value == "video",
        fps=base.fps,
        frame_step=base.frames.step if base.frames else 1,
        frame_offset=base.frames.offset if base.frames else 0,
    )
    # Post-processing keys are an installed plugin's to honour or refuse, as in a job's own file.
    asked = plugins.wanted(settings, video=reading.video)
    # Only the keys it sets: the others are WanGP's for the base, which a job's own files may need
    # (Lucy Edit's "UV" with the video the job brings).
    problems = [
        *asked.problems,
        *(line for line in refusals(reading, handled=asked.keys) if line.split(":", 1)[0] in settings),
    ]
    return f"its default setting {problems[0]}" if problems else ""


def _other_defaults(definition: WangpDefinition, base: ModelPreset) -> dict[str, object]:
    # The defaults beyond a preset's Defaults where they differ from WanGP's for the base model:
    # read as if a settings file gave them, when it leaves them out.
    facts = model_facts(base.wangp_model_types)
    carried = {*_DEFAULTS_KEYS, _guidance_key(base), *_FORM_ONLY_SETTINGS}
    return {
        key: value
        for key, value in definition.settings.items()
        if key not in carried
        and (row := KEYS.get(key)) is not None
        and value is not None
        and not same_value(value, facts.factory.get(key, row.default))
    }


def _guidance_key(base: ModelPreset) -> str:
    return (
        "embedded_guidance_scale"
        if model_facts(base.wangp_model_types).embedded_guidance
        else "guidance_scale"
    )


def _dequantized_components(base: ModelPreset, files: list[str]) -> list[Component]:
    """The base's components, its transformers marked `dequantized` where the definition's own file
    (the first of URLs, of URLs2) is prequantized: held dequantized, as models.prequantized loads it."""
    if all(kind_of_name(_file_name(url)) is Kind.PLAIN for url in files):
        return list(base.components)
    marked = {"dequantized": True}
    return [c.model_copy(update=marked) if c.role is Role.TRANSFORMER else c for c in base.components]


def _derived(definition: WangpDefinition, base: ModelPreset) -> ModelPreset:
    settings = definition.settings
    # A catalogue model that is itself a file over another's folder (Kandinsky 5 Lite I2V): its
    # definitions load their own file, or else that model's, over the same folder.
    folder_of = base.derived_from or base.id
    urls = list(definition.urls.urls) or (list(base.wangp_weights) if base.derived_from else [])
    wanted = {key: settings[key] for key in _DEFAULTS_KEYS if settings.get(key) is not None}
    if (guidance := settings.get(_guidance_key(base))) is not None:
        wanted["guidance_scale"] = guidance
    defaults = type(base.defaults).model_validate(base.defaults.model_dump() | wanted)
    return base.model_copy(
        update={
            "id": definition.id,
            "name": f"{definition.id} (WanGP definition, {base.name} weights)",
            # The base's model types first: WanGP's facts, step-cache figures and LoRA folder of
            # the architecture are read from the first; the catalogue finds the base before this.
            "wangp_model_types": [*base.wangp_model_types, definition.id],
            "defaults": defaults,
            "derived_from": folder_of,
            "wangp_weights": urls,
            "wangp_weights2": list(definition.urls2.urls),
            "components": _dequantized_components(base, [*urls[:1], *definition.urls2.urls[:1]]),
            "wangp_modules": [list(files) for files in definition.module_files],
            "wangp_defaults": _other_defaults(definition, base),
            "builtin_loras": list(definition.loras.urls),
            "builtin_lora_multipliers": list(definition.lora_multipliers),
            "attention": dict(definition.attention) if isinstance(definition.attention, Mapping) else {},
            "ltx2_pipeline": str(definition.ltx2_keys.get("ltx2_pipeline", "")),
            "ltx2_lora_distilled": str(definition.ltx2_keys.get("ltx2_lora_distilled", "")),
            "sizes_source": f"Bytes are {base.id}'s, whose weights this definition names.",
            "description": f"WanGP definition {definition.id!r} on {base.id}: its own default settings.",
        }
    )
