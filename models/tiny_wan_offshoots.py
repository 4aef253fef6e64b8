"""Tiny random-weight SkyReels V2 diffusion forcing, ChronoEdit and Lucy Edit: the real diffusers
classes at a few hundred kB, over the tiny Wan parts of models.tiny (UMT5 text, Wan VAEs), each
component from a fixed seed so a build is byte-identical from run to run.

`write_skyreels_single_file` writes the tiny SkyReels transformer in its original key layout
(WanGP's sky_reels2_diffusion_forcing files), checked against the layout models.single_file reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    AutoencoderKLWan,
    ChronoEditPipeline,
    ChronoEditTransformer3DModel,
    LucyEditPipeline,
    SkyReelsV2DiffusionForcingPipeline,
    SkyReelsV2Transformer3DModel,
    UniPCMultistepScheduler,
)
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

from models.tiny import seeded, wan_text, wan_transformer, wan_vae

# The tiny Wan transformer's shape (models.tiny.wan_transformer), for the classes built here.
_WAN_SHAPE: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
}


def _flow_unipc(shift: float) -> Any:
    # UniPC in flow-prediction mode, as the Wan-based repos ship it, at the model's own shift.
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000
    )


def skyreels_transformer() -> Any:
    """SkyReels V2 DF 1.3B's layout in tiny: Wan's blocks plus the fps embedding (inject_sample_info)."""
    return seeded(lambda: SkyReelsV2Transformer3DModel(**_WAN_SHAPE, inject_sample_info=True))


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
    image_encoder = seeded(
        lambda: CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=8,
                intermediate_size=16,
                projection_dim=8,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=4,
                patch_size=1,
            )
        ).eval()
    )
    transformer = seeded(
        lambda: ChronoEditTransformer3DModel(
            **(_WAN_SHAPE | {"in_channels": 36}), image_dim=8, added_kv_proj_dim=24
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
    vae = seeded(
        lambda: AutoencoderKLWan(
            base_dim=4,
            decoder_base_dim=4,
            z_dim=48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
        )
    )
    return LucyEditPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=wan_transformer(in_channels=96, out_channels=48),
        vae=vae,
        scheduler=_flow_unipc(5.0),
        expand_timesteps=True,
    )


def write_skyreels_single_file(dest: Path, transformer: Any = None) -> Path:
    """The tiny SkyReels DF transformer (the skyreels-df-tiny preset's, same weights), or
    `transformer`, saved as one safetensors file in SkyReels' original key layout; returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names
    from models.tiny import _wan_original_name

    state = (transformer if transformer is not None else skyreels_transformer()).state_dict()
    names = {key: _skyreels_original_name(key, _wan_original_name) for key in state}
    # The inverse is checked against the layout the farm reads: each name must map back to itself.
    if diffusers_names(list(names.values()), "SkyReelsV2Transformer3DModel") != names:
        raise RuntimeError("the original SkyReels names written here do not convert back to diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest


def _skyreels_original_name(key: str, wan_name: Any) -> str:
    # The fps projection is an nn.Sequential (Linear, SiLU, Linear) in the original model.
    if key.startswith("fps_projection.net.0.proj."):
        return "fps_projection.0." + key.removeprefix("fps_projection.net.0.proj.")
    if key.startswith("fps_projection.net.2."):
        return "fps_projection.2." + key.removeprefix("fps_projection.net.2.")
    return str(wan_name(key))
