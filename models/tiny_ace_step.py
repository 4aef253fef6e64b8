"""Tiny ACE-Step 1.5 pipeline for tests: diffusers' AceStepPipeline classes with random weights.

A 2-layer DiT 32 wide over 8 acoustic channels (turbo: guidance distilled, as WanGP's 1.5 Turbo
checkpoints), a condition encoder of the same width (1 lyric layer, 1 timbre layer), a 2-layer
Qwen3 text encoder over a Qwen BPE, and a two-stage Oobleck VAE that turns stereo audio at 800 Hz
into one latent frame every 32 samples: 25 a second, as the real one's at 48 kHz, so its 30 s of
timbre latents are the real 750 frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.tiny import qwen_tokenizer, seeded

ACE_SAMPLE_RATE = 800
ACE_DOWNSAMPLING = (4, 8)  # 32 samples per latent frame
ACE_ACOUSTIC = 8  # latent channels (the real model's 64)
ACE_WIDTH = 32
ACE_TEXT_WIDTH = 16  # the text encoder's width (Qwen3-Embedding-0.6B's 1024)


def build_ace_step() -> Any:
    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder
    from diffusers.pipelines.ace_step.pipeline_ace_step import AceStepPipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = qwen_tokenizer()
    heads: dict[str, Any] = {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
    text_config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=ACE_TEXT_WIDTH,
        intermediate_size=32,
        num_hidden_layers=2,
        max_position_embeddings=4096,
        **heads,
    )
    return AceStepPipeline(
        vae=seeded(
            lambda: AutoencoderOobleck(
                encoder_hidden_size=4,
                downsampling_ratios=list(ACE_DOWNSAMPLING),
                channel_multiples=[1, 2],
                decoder_channels=4,
                decoder_input_channels=ACE_ACOUSTIC,
                audio_channels=2,
                sampling_rate=ACE_SAMPLE_RATE,
            )
        ),
        text_encoder=seeded(lambda: Qwen3Model(text_config)),
        tokenizer=tokenizer,
        transformer=seeded(
            lambda: AceStepTransformer1DModel(
                hidden_size=ACE_WIDTH,
                intermediate_size=64,
                num_hidden_layers=2,
                in_channels=3 * ACE_ACOUSTIC,  # noise, source latents and their mask
                audio_acoustic_hidden_dim=ACE_ACOUSTIC,
                sliding_window=16,
                is_turbo=True,
                model_version="turbo",
                **heads,
            )
        ),
        condition_encoder=seeded(
            lambda: AceStepConditionEncoder(
                hidden_size=ACE_WIDTH,
                intermediate_size=64,
                text_hidden_dim=ACE_TEXT_WIDTH,
                timbre_hidden_dim=ACE_ACOUSTIC,
                num_lyric_encoder_hidden_layers=1,
                num_timbre_encoder_hidden_layers=1,
                sliding_window=16,
                **heads,
            )
        ),
        # ACE-Step's timesteps are in [0, 1]: the pipeline hands the scheduler its own sigmas.
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
    )


def write_ace_step_single_file(pipe: Any, dest: Path) -> Path:
    """The tiny pipeline's DiT and condition encoder (its silence latent aside, a file of its own in
    WanGP) saved as one safetensors file in the original release's key layout, as WanGP ships
    ace_step_v1_5_transformer_bf16.safetensors; returns `dest`. Checked against the converter that
    reads it: each name must come back to diffusers' own."""
    from safetensors.torch import save_file

    from models.ace_step_layout import CONDITION_ENCODER, TRANSFORMER, diffusers_states

    tensors: dict[str, Any] = {}
    for component, prefix in ((TRANSFORMER, "decoder."), (CONDITION_ENCODER, "encoder.")):
        for key, tensor in getattr(pipe, component).state_dict().items():
            if key == "silence_latent":
                continue
            name = key if key == "null_condition_emb" else prefix + _original_name(key)
            tensors[name] = tensor.contiguous()
    back = diffusers_states(tensors)
    for component in (TRANSFORMER, CONDITION_ENCODER):
        wanted = set(getattr(pipe, component).state_dict()) - {"silence_latent"}
        if set(back[component]) != wanted:
            raise RuntimeError(f"the original names written for {component} do not read back as diffusers'")
    save_file(tensors, str(dest))
    return dest


# Diffusers' names back to the original release's (inverse of models.ace_step_layout).
_ORIGINAL = (
    (".to_q.", ".q_proj."),
    (".to_k.", ".k_proj."),
    (".to_v.", ".v_proj."),
    (".to_out.0.", ".o_proj."),
    (".norm_q.", ".q_norm."),
    (".norm_k.", ".k_norm."),
)


def _original_name(key: str) -> str:
    for diffusers_prefix, original in (("proj_in_conv.", "proj_in.1."), ("proj_out_conv.", "proj_out.1.")):
        if key.startswith(diffusers_prefix):
            return original + key.removeprefix(diffusers_prefix)
    for renamed, original in _ORIGINAL:
        key = key.replace(renamed, original)
    return key
