"""Tiny HunyuanVideo 1.5 pipelines (text-to-video, image-to-video) with the real architecture.

HunyuanVideo 1.5's layout, shrunk: a Qwen2.5-VL text model read at its third-last hidden state
behind the pipeline's chat template (whose first 108 tokens it crops), a ByT5 encoder for quoted
glyph text, an MMDiT over the 32-channel VAE (16x spatial, 4x temporal) whose input is the noise,
the condition latents and a mask (65 channels), and a SigLIP image encoder for image-to-video.
Every component is built after a fresh seed (models.tiny.seeded), so a build is byte-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    AutoencoderKLHunyuanVideo15,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideo15ImageToVideoPipeline,
    HunyuanVideo15Pipeline,
    HunyuanVideo15Transformer3DModel,
)
from diffusers.guiders import ClassifierFreeGuidance
from transformers import (
    ByT5Tokenizer,
    PreTrainedTokenizerFast,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
)

from models.tiny import PROMPTS, qwen_tokenizer, seeded, t5_config

LATENT_CHANNELS = 8  # the real VAE has 32: its decoder needs blocks at least this wide
# The pipelines crop this many tokens of their chat template's prefix (its length under the real
# Qwen2.5 tokenizer); the tiny tokenizer learns the system message's words so that it is 108 here too.
CROP_TOKENS = 108
# Qwen2.5-VL's chat template for plain-text messages.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen15_tokenizer(system_message: str) -> PreTrainedTokenizerFast:
    """Qwen's tiny BPE (models.tiny.qwen_tokenizer) with a chat template, trained on the sample
    prompts and the pipeline's system message."""
    corpus = [*PROMPTS.splitlines(), system_message, "system\n", "user\n", "assistant\n"] * 3
    tokenizer = qwen_tokenizer(corpus)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def transformer(task: str = "t2v", **changes: Any) -> Any:
    """HunyuanVideo 1.5's MMDiT in tiny: 65 input channels (noise, condition latents, mask) over
    the 32-channel VAE, a token refiner, Qwen (text), ByT5 (glyph) and SigLIP (image) inputs."""
    config: dict[str, Any] = {
        "in_channels": 2 * LATENT_CHANNELS + 1,
        "out_channels": LATENT_CHANNELS,
        "num_attention_heads": 2,
        "attention_head_dim": 8,
        "num_layers": 1,
        "num_refiner_layers": 1,
        "mlp_ratio": 2.0,
        "patch_size": 1,
        "patch_size_t": 1,
        "text_embed_dim": 32,
        "text_embed_2_dim": 16,
        "image_embed_dim": 16,
        "rope_axes_dim": (2, 2, 4),
        # The pipelines' default size (t2v) or size bucket (i2v) side, in pixels.
        "target_size": 64,
        "task_type": task,
    }
    return seeded(lambda: HunyuanVideo15Transformer3DModel(**(config | changes)))


def vae() -> Any:
    # The real compression (16x spatial over five levels, 4x temporal), 8 to 16 wide: the encoder
    # groups its last blocks into the 2 x 8 moments, the decoder repeats the latents to its width.
    return seeded(
        lambda: AutoencoderKLHunyuanVideo15(
            latent_channels=LATENT_CHANNELS,
            block_out_channels=(8, 8, 8, 16, 16),
            layers_per_block=1,
            spatial_compression_ratio=16,
            temporal_compression_ratio=4,
        )
    )


def _components(pipeline_class: Any, task: str) -> Any:
    # The pipeline is built first without its tokenizer: the system message it crops is its own
    # attribute, and the tokenizer is trained on its words.
    byt5 = ByT5Tokenizer()
    text_encoder_2 = seeded(
        lambda: T5EncoderModel(T5Config(**(t5_config(len(byt5)) | {"d_model": 16, "d_kv": 4}))).eval()
    )
    parts: dict[str, Any] = {
        "transformer": transformer(task),
        "vae": vae(),
        # As in the hunyuanvideo-community repos: Euler over flow sigmas, shift 7 (WanGP's own
        # flow_shift per model comes with each job).
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "text_encoder": None,
        "tokenizer": None,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": byt5,
        "guider": ClassifierFreeGuidance(guidance_scale=6.0),
    }
    if task == "i2v":
        parts["image_encoder"] = seeded(
            lambda: SiglipVisionModel(
                SiglipVisionConfig(
                    hidden_size=16,
                    intermediate_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    image_size=8,
                    patch_size=2,
                )
            ).eval()
        )
        parts["feature_extractor"] = SiglipImageProcessor(size={"height": 8, "width": 8})
    pipe = pipeline_class(**parts)
    tokenizer = qwen15_tokenizer(pipe.system_message)
    vocab = tokenizer.get_vocab()
    config = Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        # Three layers: the pipeline reads hidden_states[-3], which is then the first layer's output.
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    pipe.register_modules(
        tokenizer=tokenizer, text_encoder=seeded(lambda: Qwen2_5_VLTextModel(config).eval())
    )
    return pipe


def build_t2v() -> Any:
    return _components(HunyuanVideo15Pipeline, "t2v")


def build_i2v() -> Any:
    return _components(HunyuanVideo15ImageToVideoPipeline, "i2v")


def write_single_file(dest: Path, model: Any = None) -> Path:
    """The tiny HunyuanVideo 1.5 transformer (the tiny presets', same weights), or `model`, saved
    as one safetensors file in WanGP's key layout (models.hunyuan15_layout); returns `dest`."""
    from safetensors.torch import save_file

    from models.hunyuan15_layout import hunyuan15_to_original

    state = (model if model is not None else transformer()).state_dict()
    save_file({key: value.contiguous() for key, value in hunyuan15_to_original(state).items()}, str(dest))
    return dest
