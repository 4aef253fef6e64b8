"""Tiny audio pipelines for tests: the real diffusers/transformers classes with random weights.

Stable Audio 3 (StableAudio3Pipeline): a 2-layer DiT 32 wide, a one-level SAME autoencoder (plain
attention) that turns stereo audio at 4 kHz into 8 latent channels every 64 samples, a 2-layer
T5Gemma encoder and a T5-style BPE tokenizer capped at 16 tokens (the pipeline pads every prompt
to the tokenizer's length). The scheduler is FlowMatchEuler in ping-pong mode, as the distilled
checkpoints ship.
"""

from __future__ import annotations

from typing import Any

from models.tiny import seeded, t5_tokenizer

SA3_SAMPLE_RATE = 4000
SA3_PATCH = 32
SA3_STRIDE = 2  # samples per latent frame: SA3_PATCH x SA3_STRIDE
SA3_LATENT = 8
SA3_WIDTH = 32


def _unzeroed(module: Any) -> Any:
    """`module` with its zero-initialised weight matrices drawn at random: SA3's classes start their
    output projections at zero (training starts from identity), which at random elsewhere would
    make the tiny VAE's output and the DiT's velocity ignore their inputs."""
    import torch

    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0.0, 0.2)
    return module


def build_stable_audio3() -> Any:
    from diffusers.models.autoencoders.autoencoder_same import AutoencoderSAME
    from diffusers.models.transformers.transformer_stable_audio3 import StableAudio3DiTModel
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from diffusers.pipelines.stable_audio_3.pipeline_stable_audio_3 import StableAudio3Pipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import T5GemmaConfig, T5GemmaEncoderModel

    tokenizer = t5_tokenizer(model_max_length=16)
    side = {
        "vocab_size": len(tokenizer),
        "hidden_size": SA3_WIDTH,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 64,
        "sliding_window": 16,
        "layer_types": ["sliding_attention", "full_attention"],
    }
    # The encoder alone: SA3 reads T5Gemma's encoder states (WanGP's t5gemma-b-b-ul2).
    config = T5GemmaConfig(encoder=side, decoder=side, vocab_size=len(tokenizer), is_encoder_decoder=False)
    return StableAudio3Pipeline(
        vae=seeded(
            lambda: _unzeroed(
                AutoencoderSAME(
                    audio_channels=2,
                    patch_size=SA3_PATCH,
                    encoder_channels=16,
                    encoder_c_mults=(2,),
                    encoder_strides=(SA3_STRIDE,),
                    encoder_transformer_depths=(1,),
                    latent_dim=SA3_LATENT,
                    dim_heads=8,
                    ff_mult=1,
                    # At random, the differential attention's two maps nearly cancel: the decoded
                    # audio would barely depend on the latents (1e-5), so the tiny one uses plain.
                    use_differential_attention=False,
                    sampling_rate=SA3_SAMPLE_RATE,
                )
            )
        ),
        text_encoder=seeded(lambda: T5GemmaEncoderModel(config)),
        tokenizer=tokenizer,
        duration_embedder=seeded(lambda: StableAudio3DurationEmbedder(output_dim=SA3_WIDTH, fourier_dim=16)),
        transformer=seeded(
            lambda: _unzeroed(
                StableAudio3DiTModel(
                    io_channels=SA3_LATENT,
                    embed_dim=SA3_WIDTH,
                    depth=2,
                    num_heads=2,
                    cond_token_dim=SA3_WIDTH,
                    global_cond_dim=SA3_WIDTH,
                    local_add_cond_dim=SA3_LATENT + 1,
                    timestep_features_dim=16,
                    ff_mult=2.0,
                    num_memory_tokens=4,
                )
            )
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(stochastic_sampling=True),
    )


def write_sa3_single_file(dest: Any, pipe: Any = None) -> Any:
    """The tiny Stable Audio 3's DiT and duration embedder (the folder's weights, or `pipe`'s) as one
    file in WanGP's layout (models.sa3_layout), saved at `dest` (a Path); returns `dest`."""
    from safetensors.torch import save_file

    from models.sa3_layout import sa3_to_original

    pipe = pipe if pipe is not None else build_stable_audio3()
    state = sa3_to_original(pipe.transformer.state_dict(), pipe.duration_embedder.state_dict())
    save_file({key: value.contiguous() for key, value in state.items()}, str(dest))
    return dest
