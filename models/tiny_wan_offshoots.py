"""Tiny random-weight SkyReels V2 diffusion forcing, ChronoEdit and Lucy Edit: the real diffusers
classes at a few hundred kB, over the tiny Wan parts of models.tiny (UMT5 text, Wan VAEs), each
component from a fixed seed so a build is byte-identical from run to run.

`write_original_single_file` writes a tiny transformer in its original key layout (WanGP's
sky_reels2_diffusion_forcing, chrono_edit and lucy_edit files), checked against the layout
models.single_file reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    ChronoEditPipeline,
    ChronoEditTransformer3DModel,
    LucyEditPipeline,
    SkyReelsV2DiffusionForcingPipeline,
    SkyReelsV2Transformer3DModel,
    UniPCMultistepScheduler,
)
from transformers import CLIPImageProcessorPil

from models.tiny import (
    WAN_SHAPE,
    seeded,
    wan22_vae,
    wan_image_encoder,
    wan_original_name,
    wan_text,
    wan_transformer,
    wan_vae,
)


def _flow_unipc(shift: float) -> Any:
    # UniPC in flow-prediction mode, as the Wan-based repos ship it, at the model's own shift.
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000
    )


def skyreels_transformer() -> Any:
    """SkyReels V2 DF 1.3B's layout in tiny: Wan's blocks plus the fps embedding (inject_sample_info)."""
    return seeded(lambda: SkyReelsV2Transformer3DModel(**WAN_SHAPE, inject_sample_info=True))


def build_skyreels_df() -> Any:
    tokenizer, text_encoder = wan_text()
    return SkyReelsV2DiffusionForcingPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=skyreels_transformer(),
        vae=wan_vae(),
        scheduler=_flow_unipc(8.0),  # SkyReels DF's shift (WanGP's default flow_shift 8)
    )


def build_chrono_edit() -> Any:
    """ChronoEdit's layout in tiny: Wan 2.1 I2V's 36 input channels (noise, mask, image latents) and
    a CLIP image encoder whose tokens the blocks cross-attend."""
    tokenizer, text_encoder = wan_text()
    image_encoder = wan_image_encoder()
    transformer = seeded(
        lambda: ChronoEditTransformer3DModel(
            **(WAN_SHAPE | {"in_channels": 36}), image_dim=8, added_kv_proj_dim=24
        )
    )
    return ChronoEditPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        # The PIL backend: the default one needs torchvision, which the farm does not install.
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 4}, crop_size={"height": 4, "width": 4}),
        image_encoder=image_encoder,
        transformer=transformer,
        vae=wan_vae(),
        scheduler=_flow_unipc(5.0),
    )


def build_lucy_edit() -> Any:
    """Lucy Edit's layout in tiny: Wan 2.2 TI2V's 48-channel VAE (16x spatial) and a transformer
    reading 96 channels, the noise beside the source video's latents."""
    tokenizer, text_encoder = wan_text()
    return LucyEditPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=wan_transformer(in_channels=96, out_channels=48),
        vae=wan22_vae(),
        scheduler=_flow_unipc(5.0),
        expand_timesteps=True,
    )


def write_original_single_file(dest: Path, transformer: Any) -> Path:
    """`transformer` (a tiny SkyReels DF, ChronoEdit or Wan transformer) saved as one safetensors
    file in its original key layout, as WanGP ships its model files; returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    state = transformer.state_dict()
    names = {key: _original_name(key) for key in state}
    # The inverse is checked against the layout the farm reads: each name must map back to itself.
    model_class = type(transformer).__name__
    if diffusers_names(list(names.values()), model_class) != names:
        raise RuntimeError(f"the original {model_class} names written here do not convert back")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest


# Diffusers' names of the parts Wan's text-to-video layout lacks, back to the original ones: SkyReels'
# fps projection (an nn.Sequential of Linear, SiLU, Linear) and Wan I2V's image branch (ChronoEdit).
_OFFSHOOT_RENAMES = (
    ("fps_projection.net.0.proj.", "fps_projection.0."),
    ("fps_projection.net.2.", "fps_projection.2."),
    ("condition_embedder.image_embedder.norm1.", "img_emb.proj.0."),
    ("condition_embedder.image_embedder.ff.net.0.proj.", "img_emb.proj.1."),
    ("condition_embedder.image_embedder.ff.net.2.", "img_emb.proj.3."),
    ("condition_embedder.image_embedder.norm2.", "img_emb.proj.4."),
    (".add_k_proj.", ".k_img."),
    (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
)


def _original_name(key: str) -> str:
    for diffusers_name, original_name in _OFFSHOOT_RENAMES:
        key = key.replace(diffusers_name, original_name)
    return wan_original_name(key)
