"""The pipeline a job with images is called on: the hot one, or one built over its modules.

Two of WanGP's image calls have no pipeline of their own in a loaded folder. Wan 2.2 TI2V loads as
a text-to-video WanPipeline; from a start image diffusers renders it with WanImageToVideoPipeline
and expanded timesteps (the image pinned as the first latent frame) over the same modules. Wan 2.1
FLF2V's CLIP branch reads two images; from a start image alone WanGP gives it the start image
twice, which diffusers' call does not do by itself. Either pipeline is a new object over the hot
pipeline's modules: nothing is loaded, and the hot pipeline is left as it was.
"""

from __future__ import annotations

from typing import Any

from models.catalogue import ModelPreset, Task
from models.hunyuan15_call import Hunyuan15Call
from models.kandinsky5_call import with_wangp_rope_scale
from models.request import GenerationRequest
from models.wan_offshoots import own_call
from models.z_image_control import control_call, is_control


def pipeline_for(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> Any:
    """The pipeline that renders `request`: `pipe` itself, or an image-to-video pipeline over its
    modules (TI2V from a start image; FLF2V from a start image alone), or a model's own call over
    it (models.wan_offshoots: ChronoEdit's image edit)."""
    if (own := own_call(pipe, preset)) is not None:
        return own
    if preset.family == "hunyuan15":  # its guider, step callback and image size: models.hunyuan15_call
        return Hunyuan15Call(pipe)
    if preset.family == "kandinsky5":  # WanGP's RoPE scale at every size: models.kandinsky5_call
        return with_wangp_rope_scale(pipe)
    if is_control(preset):  # Z-Image ControlNet: Turbo alone, or its control as WanGP adds it
        return control_call(pipe, request)
    if request.image_start is None:
        return pipe
    if preset.task is Task.TI2V:
        return _image_to_video(pipe, expand_timesteps=True)
    if request.image_end is None and _reads_two_images(pipe):
        built = _image_to_video(pipe)
        encode = built.encode_image
        # Its image branch gets the start image as both images (one call, one new object).
        built.encode_image = lambda image, device=None: encode(
            image if isinstance(image, list) else [image] * 2, device
        )
        return built
    return pipe


def _reads_two_images(pipe: Any) -> bool:
    # FLF2V's transformer adds a learned position to the tokens of two CLIP images.
    transformer = getattr(pipe, "transformer", None)
    return transformer is not None and getattr(transformer.config, "pos_embed_seq_len", None) is not None


def _image_to_video(pipe: Any, **config: Any) -> Any:
    # Imported here: the module pulls in transformers' CLIP image processor, which only these
    # jobs need. The constructor, not from_pipe: from_pipe casts the shared modules to the dtype it
    # is given (fp32 by default), which would change the hot pipeline.
    from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline

    settings = {key: pipe.config[key] for key in ("boundary_ratio", "expand_timesteps") if key in pipe.config}
    built = WanImageToVideoPipeline(**pipe.components, **(settings | config))
    built.set_progress_bar_config(disable=True)
    if hasattr(pipe, "hf_device_map"):  # mmgp's mark that the modules' devices are its own
        built.hf_device_map = pipe.hf_device_map
    return built
