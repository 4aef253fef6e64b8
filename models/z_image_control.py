"""Z-Image Turbo's ControlNets as WanGP ships them (architectures z_image_control,
z_image_control2, z_image_control2_1 at Wan2GP 8681e9f7), read as diffusers' ZImageControlNetModel.

WanGP merges a ControlNet "module" (the Z-Image-Turbo-Fun-Controlnet-Union files of its
definitions' `modules`) into its own Z-Image transformer (models/z_image/z_image_transformer2d.py,
configs/z_image_control*.json); diffusers keeps it beside the transformer, which it shares the
embedders and refiners of. The three architectures map to diffusers' three modes:

- z_image_control (Union 1.0): 6 control blocks, the control latent alone (16 channels), the control
  tokens refined by blocks of their own (diffusers' add_control_noise_refiner None);
- z_image_control2 (Union 2.0): 15 control blocks, whose first two also steer the noise refiner
  (WanGP's use_separate_control_refiner off; diffusers' "control_layers"), 33 input channels;
- z_image_control2_1 (Union 2.1): the same with refiner control blocks of their own (WanGP's
  use_separate_control_refiner; diffusers' "control_noise_refiner").

The 33 channels are the control latent, a keep mask and an inpainting latent; without an inpainting
mask WanGP fills the last 17 with zeros (pipeline_z_image.py), as diffusers' pipeline does. The catalogue's
control models (models/presets/z-image-turbo-control*.json) load the module beside Z-Image Turbo's
folder (load_control_pipeline); a job's control image (image_guide, with V in video_prompt_type)
is resized to the output size and added at control_net_weight (control_kwargs); a job without one
renders Z-Image Turbo alone, as WanGP's control transformer does (plain_pipeline). Pure of torch
at import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.qwen_layouts import COMFY_PREFIX


@dataclass(frozen=True)
class ControlVariant:
    """One WanGP Z-Image control architecture as ZImageControlNetModel's config."""

    places: tuple[int, ...]  # the transformer layers each control block's output is added after
    refiner_places: tuple[int, ...]  # the noise refiner layers steered (2.x)
    in_dim: int  # channels of the control input
    mode: str | None  # diffusers' add_control_noise_refiner

    def config(self, **sizes: Any) -> dict[str, Any]:
        """ZImageControlNetModel's config for this variant at the transformer `sizes` (dim,
        n_heads, n_kv_heads, n_refiner_layers, ...; Z-Image Turbo's when none are given)."""
        return {
            "control_layers_places": list(self.places),
            "control_refiner_layers_places": list(self.refiner_places),
            "control_in_dim": self.in_dim,
            "add_control_noise_refiner": self.mode,
        } | sizes


# Transcribed from WanGP's models/z_image/configs/z_image_control*.json (8681e9f7).
_EVERY_OTHER = tuple(range(0, 30, 2))
VARIANTS: dict[str, ControlVariant] = {
    "z_image_control": ControlVariant((0, 5, 10, 15, 20, 25), (0, 1), 16, None),
    "z_image_control2": ControlVariant(_EVERY_OTHER, (0, 1), 33, "control_layers"),
    "z_image_control2_1": ControlVariant(_EVERY_OTHER, (0, 1), 33, "control_noise_refiner"),
}

# The original release's attention names, which WanGP renames on load (z_image_main.conv_state_dict).
ORIGINAL_NAMES = (
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_q.", ".attention.q_norm."),
    (".attention.norm_k.", ".attention.k_norm."),
)
# A fused projection, which WanGP splits tensor by tensor: refused by name here.
FUSED_QKV = ".attention.qkv."


class ControlModuleRefused(ValueError):
    """A ControlNet module file that does not load as the architecture's ControlNet."""


def controlnet_layout(state: dict[str, Any], variant: ControlVariant) -> dict[str, Any]:
    """A control module's keys in diffusers' names: a ComfyUI prefix dropped, the original
    release's attention names renamed; Union 2.0's refiner blocks, which neither WanGP nor
    diffusers runs (its control blocks steer the refiner), left out."""
    out = {}
    for key, value in state.items():
        name = key.removeprefix(COMFY_PREFIX)
        for new, old in ORIGINAL_NAMES:
            name = name.replace(old, new)
        if variant.mode == "control_layers" and name.startswith("control_noise_refiner."):
            continue
        out[name] = value
    return out


def load_controlnet(path: Path, architecture: str, sizes: dict[str, Any], dtype: Any) -> Any:
    """The ControlNet of WanGP architecture `architecture` with the weights of the module file
    `path`, at the transformer `sizes`; ControlModuleRefused names fused, missing or unknown keys."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel
    from safetensors.torch import load_file

    variant = VARIANTS[architecture]
    state = controlnet_layout(load_file(str(path)), variant)
    fused = sorted(key for key in state if FUSED_QKV in key)
    if fused:
        raise ControlModuleRefused(f"{path.name}: fused attention.qkv projections: {', '.join(fused[:4])}")
    model = ZImageControlNetModel(**variant.config(**sizes))
    expected = set(model.state_dict())
    missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unknown:
        raise ControlModuleRefused(
            f"{path.name} is not a {architecture} module: missing {', '.join(missing[:4]) or 'none'}; "
            f"unknown {', '.join(unknown[:4]) or 'none'}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(dtype)


# --- wiring: the catalogue's control models, their call and their load ------------------------------

PIPELINE = "ZImageControlNetPipeline"
# The model type whose weights a control definition renders over ("URLs": "z_image" in each).
BACKBONE = "z_image"
# WanGP's default control_net_weight on these models (z_image_handler.update_default_settings).
DEFAULT_WEIGHT = 0.75
# The video_prompt_type letters rendered: "" (no control: Z-Image Turbo alone) and "V" (the control
# image as given, WanGP's "Use Z-Image Raw Format"). P, D and E run WanGP's pose, depth and edge
# annotators over it first, which the farm has not; A is the inpainting path (a mask).
LETTERS = ("", "V")
# The tiny control model's architecture (models.tiny_z_image_control builds Union 2.1's layout).
TINY = "z-image-control-tiny"
ARCHITECTURES: dict[str, str] = {name: name for name in VARIANTS} | {TINY: "z_image_control"}


def is_control(preset: Any) -> bool:
    """A catalogue model rendered by ZImageControlNetPipeline (a WanGP control definition, the tiny)."""
    return bool(preset.pipeline == PIPELINE)


def variant_of(preset: Any) -> str:
    """The WanGP control architecture of a control preset: its first model type that is one, else
    that of the tiny it is over."""
    for name in (*preset.wangp_model_types, preset.derived_from or "", preset.id):
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise ValueError(f"{preset.id} is not a Z-Image control model")


def guide_used(letters: object) -> bool:
    """WanGP reads the control image only with V in video_prompt_type (wgp.py validate_settings
    drops image_guide otherwise)."""
    return isinstance(letters, str) and "V" in letters


def control_kwargs(preset: Any, request: Any) -> dict[str, Any]:
    """ZImageControlNetPipeline's control arguments: the control image at the output size (Lanczos,
    as WanGP's preprocess_video_with_mask resizes it) and its weight; {} without one."""
    if not is_control(preset) or request.image_guide is None:
        return {}
    from PIL import Image

    with Image.open(request.image_guide) as image:
        control = image.convert("RGB").resize((request.width, request.height), Image.Resampling.LANCZOS)
    weight = DEFAULT_WEIGHT if request.control_net_weight is None else request.control_net_weight
    return {"control_image": control, "controlnet_conditioning_scale": weight}


def control_call(pipe: Any, request: Any) -> Any:
    """What a control model's job is called on: Z-Image Turbo alone without a control image; with
    one, Union 1.0's pipeline as it is (diffusers adds its control as WanGP does), Union 2.x's with
    its refiner control added as WanGP adds it (models.z_image_union2)."""
    if request.image_guide is None:
        return plain_pipeline(pipe)
    if pipe.controlnet.config.add_control_noise_refiner is None:
        return pipe
    from models.z_image_union2 import Union2Call

    return Union2Call(pipe)


def plain_pipeline(pipe: Any) -> Any:
    """Z-Image's own pipeline over a control pipeline's modules, for a job without a control image:
    WanGP's control transformer adds nothing then (no control context), so Turbo renders alone."""
    from diffusers import ZImagePipeline

    parts = {key: value for key, value in pipe.components.items() if key != "controlnet"}
    plain: Any = ZImagePipeline(**parts)
    plain.set_progress_bar_config(disable=True)
    if hasattr(pipe, "hf_device_map"):  # mmgp's mark that the modules' devices are its own
        plain.hf_device_map = pipe.hf_device_map
    return plain


def load_control_pipeline(folder: Path, module: Path, preset: Any, dtype: Any, **parts: Any) -> Any:
    """ZImageControlNetPipeline: Z-Image's modules from `folder` (Z-Image Turbo's, or the tiny's)
    and the ControlNet of WanGP's module file `module`, at the sizes of the folder's own ControlNet
    where it has one (the tiny), else at Z-Image Turbo's."""
    import json

    from diffusers import ZImageControlNetPipeline, ZImagePipeline

    base = ZImagePipeline.from_pretrained(folder, dtype=dtype, **parts)
    sizes: dict[str, Any] = {}
    own = folder / "controlnet" / "config.json"
    if own.is_file():
        taken_from_variant = {"add_control_noise_refiner", "control_in_dim"}
        config = json.loads(own.read_text())
        sizes = {k: v for k, v in config.items() if not k.startswith("_") and k not in taken_from_variant}
    controlnet = load_controlnet(module, variant_of(preset), sizes, dtype)
    return ZImageControlNetPipeline(**base.components, controlnet=controlnet)


def control_inputs(given: Mapping[str, Any], image: Path | None) -> tuple[Path | None, float]:
    """The control image a settings object renders with (its image_guide, when V is among its
    letters) and its weight (control_net_weight, WanGP's 0.75 when left out)."""
    weight = given.get("control_net_weight")
    number = float(weight) if isinstance(weight, int | float) and not isinstance(weight, bool) else None
    used = image if guide_used(given.get("video_prompt_type")) else None
    return used, DEFAULT_WEIGHT if number is None else number


def definition_problem(architecture: str, module_files: Sequence[Sequence[str]]) -> str:
    """Why a WanGP definition on a control architecture cannot be served for its module; "" when
    it names one ControlNet module (its precisions), a plain file first. Its weights are checked
    as any definition's: Z-Image Turbo's ("URLs": "z_image"), or the tiny's own folder."""
    if len(module_files) != 1 or not module_files[0]:
        return (
            f"{architecture} loads one ControlNet module beside Z-Image Turbo; modules names "
            f"{len(module_files)} (or one by a model type not given)"
        )
    first = module_files[0][0].rsplit("/", 1)[-1]
    if "quanto" in first.lower() or "int8" in first.lower():
        return (
            f"{first}: an int8 quanto file listed first: the ControlNet module loads from plain "
            "tensors, so only a bf16/fp16 file listed first loads"
        )
    return ""


def weights_problem(own_urls: Sequence[str]) -> str:
    """Why a control definition with transformer files of its own is refused ("" without any):
    its ControlNet is loaded beside Z-Image Turbo's folder, not merged into another transformer."""
    if not own_urls:
        return ""
    return (
        f"its ControlNet over weights other than Z-Image Turbo's ({', '.join(own_urls)}) is not "
        f'supported yet: name them as WanGP does, "URLs": "{BACKBONE}"'
    )
