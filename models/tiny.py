"""Tiny random-weight pipelines with the real architectures, built offline for tests and the demo.

No model hub is reachable from the farm's test machines, so each tiny model is constructed from
configs: the same diffusers and transformers classes as the real repos, shrunk to a few thousand
parameters, with tokenizers trained here on a built-in corpus. The result is saved with
`save_pretrained` (safetensors) and loaded back through the same `from_pretrained` path that real
weights use. Every component is built after `torch.manual_seed(0)`, so a build is byte-identical
from run to run and the presets can state exact component sizes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLHunyuanVideo,
    AutoencoderKLLTXVideo,
    AutoencoderKLQwenImage,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

from models.catalogue import ModelPreset
from models.hf_logging import quiet_hf_libraries

SEED = 0

# QwenImagePipeline wraps every prompt in this chat template and drops its first 34 tokens (the
# length of the prefix under the real Qwen2.5 tokenizer). The corpus below holds the template so
# that the tiny BPE learns each of its words as one token and the prefix is 34 tokens here too;
# otherwise the pipeline would cut into (or past) the user's prompt.
QWEN_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
    "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
    "<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_DROP_TOKENS = 34

PROMPTS = """\
a cat dancing in the rain, cinematic lighting, slow motion
a red fox running through a snowy forest at dawn
an astronaut riding a horse on the moon, highly detailed
a bowl of fruit on a wooden table, soft light, still life
a city street at night with neon signs and wet reflections
waves crashing on a rocky shore under a stormy sky
a small boat drifting on a calm lake surrounded by mountains
a portrait of an old man with a white beard, studio photo
a dragon flying over a medieval castle, fantasy art
a close up of a flower with dew drops, macro photography
children playing football in a park on a sunny afternoon
a train crossing a bridge over a river in autumn
blurry, low quality, distorted, watermark, text, bad anatomy, worst quality
dance monkey, bad quality, negative, ugly, static, overexposed
"""


def _corpus() -> Iterator[str]:
    """Lines to train the tiny BPEs on: sample prompts plus Qwen-Image's template words."""
    # The template text is given without its special tokens: those are added tokens, never merged.
    template_words = QWEN_TEMPLATE.replace("<|im_start|>", "").replace("<|im_end|>", "").format("")
    for _ in range(3):
        yield from PROMPTS.splitlines()
        yield from template_words.splitlines()


def train_bpe(
    tokenizer: Tokenizer, special: list[str], alphabet: list[str], corpus: Iterable[str] | None = None
) -> None:
    """Train `tokenizer` on `corpus` (by default the sample prompts and Qwen-Image's template words)."""
    # A vocab_size above what the corpus can fill makes training run until every corpus word is one
    # token; the vocabulary then stays a few hundred entries.
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=special, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(_corpus() if corpus is None else corpus, trainer)


_ASCII = [chr(c) for c in range(32, 127)]


def t5_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A SentencePiece-like BPE with T5's specials: <pad>=0, </s>=1, <unk>=2, and </s> appended."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    train_bpe(tokenizer, ["<pad>", "</s>", "<unk>"], [*_ASCII, "▁"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def clip_tokenizer() -> PreTrainedTokenizerFast:
    """A lower-casing byte-level BPE with CLIP's <|startoftext|> ... <|endoftext|> framing, 77 long."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Ids 0 and 1: CLIPTextModel pools at the first eos id, except when eos_token_id == 2, which it
    # treats as a legacy config and pools at the largest id instead.
    train_bpe(tokenizer, ["<|startoftext|>", "<|endoftext|>"], pre_tokenizers.ByteLevel.alphabet())
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        pair="<|startoftext|> $A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)],
    )
    # Flux pads CLIP prompts to model_max_length, which must match the encoder's 77 positions.
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=77,
    )


# Qwen2's pre-tokenizer split: it keeps "\n" apart from the next word, so the template's prefix
# ends on a token boundary whatever the prompt starts with.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def byte_level_bpe(split: str, unk_token: str | None = None) -> Tokenizer:
    """An untrained byte-level BPE that first splits text by the regex `split` (QWEN_SPLIT and its
    variants), as the Qwen, Llama 3 and Mistral tokenizers do; train it with train_bpe."""
    tokenizer = Tokenizer(models.BPE(unk_token=unk_token))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def qwen_tokenizer(corpus: Iterable[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen2's split and chat specials; like Qwen2, it adds no BOS/EOS.
    Trained on `corpus` when given (another pipeline's prompt template), else on _corpus()."""
    tokenizer = byte_level_bpe(QWEN_SPLIT)
    train_bpe(tokenizer, QWEN_SPECIALS, pre_tokenizers.ByteLevel.alphabet(), corpus)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIALS[1:],
        model_max_length=32768,
    )


# Llama 3's pre-tokenizer split: Qwen2's, with digits grouped by up to three.
_LLAMA_SPLIT = QWEN_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
LLAMA_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


def llama_tokenizer(template: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Llama 3's split, header specials and <|begin_of_text|> prepended,
    trained on the sample prompts and the words of the pipeline's prompt `template`."""
    tokenizer = byte_level_bpe(_LLAMA_SPLIT)
    # The template's words with its newlines: Llama 3 reads "\n\n" as one token, and the pipeline
    # crops the template's first 95 tokens (its length under the real tokenizer), as it does here.
    pieces = re.split("|".join(map(re.escape, LLAMA_SPECIALS)), template.format(""))
    corpus = [*PROMPTS.splitlines(), *pieces] * 3
    train_bpe(tokenizer, LLAMA_SPECIALS, pre_tokenizers.ByteLevel.alphabet(), corpus)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", 0)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        unk_token="<|end_of_text|>",
        additional_special_tokens=LLAMA_SPECIALS[2:],
        model_max_length=4096,
    )


def seeded(build: Callable[[], Any]) -> Any:
    """Construct one component from a fresh seed, so each is independent of the others' order."""
    torch.manual_seed(SEED)
    return build()


def t5_config(vocab_size: int) -> dict[str, Any]:
    # T5 v1.1 / UMT5 shape (gated GELU, untied head), shrunk: the real encoders are 4096 wide.
    return {
        "vocab_size": vocab_size,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.0,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def _build_wan() -> Any:
    tokenizer, text_encoder = wan_text()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=wan_transformer(),
        vae=wan_vae(),
        scheduler=wan_scheduler(),
    )


def wan_image_encoder() -> Any:
    """Wan 2.1 I2V's CLIP image encoder in tiny (8 wide, over a 4x4 image in 1-pixel patches); the
    pipelines read it through a 4x4 CLIPImageProcessorPil. ChronoEdit keeps it."""
    return seeded(
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


def _build_wan_flf2v() -> Any:
    """Wan 2.1's first-last-frame layout: 36 input channels (noise, mask, start and end latents)
    and a CLIP image encoder whose two images' tokens carry a learned position embedding."""
    tokenizer, text_encoder = wan_text()
    image_encoder = wan_image_encoder()
    tokens = 4 * 4 + 1  # patches of a 4x4 image, plus the class token
    transformer = wan_transformer(
        in_channels=36, image_dim=8, added_kv_proj_dim=24, pos_embed_seq_len=2 * tokens
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=wan_vae(),
        scheduler=wan_scheduler(),
        # The PIL backend: the default one needs torchvision, which the farm does not install.
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 4}, crop_size={"height": 4, "width": 4}),
        image_encoder=image_encoder,
        transformer=transformer,
    )


def _build_wan_ti2v() -> Any:
    """Wan 2.2 TI2V's layout: the 48-channel Wan 2.2 VAE (16x spatial: a 2x pixel patch, then 8x)
    and one transformer over its latents; a start image is pinned as the first latent frame."""
    tokenizer, text_encoder = wan_text()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=wan_transformer(in_channels=48, out_channels=48),
        vae=wan22_vae(),
        scheduler=wan_scheduler(),
        expand_timesteps=True,
    )


def wan_text() -> tuple[PreTrainedTokenizerFast, Any]:
    tokenizer = t5_tokenizer()
    text_encoder = seeded(lambda: UMT5EncoderModel(UMT5Config(**t5_config(len(tokenizer)))).eval())
    return tokenizer, text_encoder


# The tiny Wan transformer's shape, shared by the Wan-based classes (SkyReels, ChronoEdit).
WAN_SHAPE: dict[str, Any] = {
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


def wan_transformer(**changes: Any) -> Any:
    return seeded(lambda: WanTransformer3DModel(**(WAN_SHAPE | changes)))


def wan_vae() -> Any:
    # Wan 2.1's VAE layout (8x spatial, 4x temporal, 16 latent channels) at base width 3.
    return seeded(
        lambda: AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    )


def wan22_vae() -> Any:
    """Wan 2.2's 48-channel VAE (16x spatial: a 2x pixel patch, then 8x; 4x temporal) in tiny, as
    Wan 2.2 TI2V and Lucy Edit use it."""
    return seeded(
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


def wan_scheduler() -> Any:
    # As in Wan-AI's diffusers repos: UniPC in flow-prediction mode with a fixed shift.
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
    )


def _build_ltx() -> Any:
    tokenizer = t5_tokenizer(model_max_length=128)
    text_encoder = seeded(lambda: T5EncoderModel(T5Config(**t5_config(len(tokenizer)))).eval())
    transformer = seeded(
        lambda: LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=16,
            cross_attention_dim=32,
            num_layers=2,
            caption_channels=32,
        )
    )
    # LTX-Video's 32x spatial / 8x temporal compression (pixel patch 4, three scaling stages). The
    # decoder_* arguments must be set too: left at their defaults the decoder alone is 237M params.
    vae = seeded(
        lambda: AutoencoderKLLTXVideo(
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            patch_size=4,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
    )
    return LTXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=ltx_scheduler(),
    )


def ltx_scheduler() -> Any:
    """LTX-Video's scheduler config, which LTX-2 keeps: Euler with a resolution-dependent shift and a
    terminal stretch."""
    return FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        base_shift=0.95,
        max_shift=2.05,
        shift_terminal=0.1,
    )


def _build_flux() -> Any:
    tokenizer, text_encoder = clip_text()
    tokenizer_2 = t5_tokenizer()
    text_encoder_2 = seeded(lambda: T5EncoderModel(T5Config(**t5_config(len(tokenizer_2)))).eval())
    # FLUX.1-dev's layout: guidance-distilled (guidance_embeds), RoPE axes summing to the head dim.
    transformer = seeded(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        )
    )
    # Latent channels = transformer in_channels / 4 (2x2 patches).
    vae = flux_vae(latent_channels=4)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        base_shift=0.5,
        max_shift=1.15,
    )
    return FluxPipeline(
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
        vae=vae,
        image_encoder=None,
        feature_extractor=None,
    )


def flux_vae(latent_channels: int) -> Any:
    """FLUX.1's VAE layout in tiny: four blocks give its 8x spatial compression. Z-Image decodes with
    the same layout at FLUX.1's 16 latent channels."""
    return seeded(
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=64,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.1159,
            scaling_factor=0.3611,
        )
    )


def clip_text() -> tuple[PreTrainedTokenizerFast, Any]:
    """CLIP-L's text model in tiny (32 wide, 77 positions) with its tokenizer."""
    tokenizer = clip_tokenizer()
    text_encoder = seeded(
        lambda: CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
                hidden_act="quick_gelu",
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        ).eval()
    )
    return tokenizer, text_encoder


def qwen_vl_text_encoder(tokenizer: PreTrainedTokenizerFast) -> Any:
    """Qwen2.5-VL in tiny (2 layers, 32 wide) over a Qwen tokenizer (qwen_tokenizer or one trained on
    another template): Qwen-Image's and Kandinsky 5's text encoder, and the edit pipelines', which
    also run its vision tower on the input images."""
    vocab = tokenizer.get_vocab()
    ids = {token: vocab[token] for token in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # M-RoPE sections (time, height, width) must sum to half the head dim (16 / 2).
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        # The class always builds a vision tower: Qwen2-VL's patching (14-pixel patches, 2 frames,
        # 2x2 merge), its width shrunk. Text-to-image never runs it.
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return seeded(lambda: Qwen2_5_VLForConditionalGeneration(config).eval())


def qwen_image_vae() -> Any:
    """Qwen-Image's VAE in tiny: Wan's layout (8x spatial, 16 latent channels) run one frame at a
    time; Krea 2 decodes with it too."""
    return seeded(
        lambda: AutoencoderKLQwenImage(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    )


def qwen_image_scheduler() -> Any:
    """Qwen-Image's scheduler config, which Qwen-Image-Edit keeps: exponential time shift by image size."""
    return FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        base_shift=0.5,
        max_shift=0.9,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )


def _build_qwen_image() -> Any:
    tokenizer = qwen_tokenizer()
    text_encoder = qwen_vl_text_encoder(tokenizer)
    transformer = seeded(
        lambda: QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
    )
    return QwenImagePipeline(
        scheduler=qwen_image_scheduler(),
        vae=qwen_image_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def tiny_hunyuan() -> Any:
    """HunyuanVideo's layout in tiny (no catalogue preset: tests save it as the real preset's weights):
    dual- and single-stream blocks over the 16-channel, 8x spatial / 4x temporal VAE, a Llama text
    encoder read at its third-last hidden state behind the pipeline's own prompt template, and CLIP's
    pooled output for the guidance-distilled conditioning."""
    template = str(DEFAULT_PROMPT_TEMPLATE["template"])
    tokenizer = llama_tokenizer(template)
    vocab = tokenizer.get_vocab()
    # Three layers: the pipeline reads hidden_states[-3], which is then the first layer's output.
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=vocab["<|begin_of_text|>"],
        eos_token_id=vocab["<|eot_id|>"],
        pad_token_id=vocab["<|end_of_text|>"],
    )
    text_encoder = seeded(lambda: LlamaModel(llama).eval())
    tokenizer_2, text_encoder_2 = clip_text()
    transformer = seeded(hunyuan_transformer)
    vae = hunyuan_vae()
    # hunyuanvideo-community/HunyuanVideo's scheduler: Euler over flow sigmas with shift 7.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )


def hunyuan_transformer(image_condition_type: str | None = None) -> Any:
    """HunyuanVideo's dual- and single-stream transformer in tiny (unseeded); image-to-video passes
    its `image_condition_type` (token_replace)."""
    return HunyuanVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=32,
        pooled_projection_dim=32,
        rope_axes_dim=(4, 6, 6),
        image_condition_type=image_condition_type,
    )


def hunyuan_vae() -> Any:
    """HunyuanVideo's causal 3D VAE (16 latent channels, 8x spatial, 4x temporal) in tiny; Kandinsky 5
    decodes with the same VAE."""
    return seeded(
        lambda: AutoencoderKLHunyuanVideo(
            latent_channels=16,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=4,
        )
    )


# Builders return Any: under mypy, diffusers' top-level names resolve to its dummy placeholder
# classes, which are unrelated types.
# A builder is a function, or "module:function" for a family whose tiny build lives in a module of
# its own (models/tiny_<family>.py, which imports the shared parts from here: no import circle).
BUILDERS: dict[str, Callable[[], Any] | str] = {
    "wan": _build_wan,
    # Variants of a family, by preset id.
    "wan-flf2v-tiny": _build_wan_flf2v,
    "wan-i2v-tiny": "models.tiny_wan_i2v:build_wan_i2v",
    "wan-ti2v-tiny": _build_wan_ti2v,
    "ltx": _build_ltx,
    "flux": _build_flux,
    "qwen-image": _build_qwen_image,
    "qwen-image-edit-tiny": "models.tiny_qwen:build_qwen_edit",
    "qwen-image-edit-plus-tiny": "models.tiny_qwen:build_qwen_edit_plus",
    "z-image": "models.tiny_z_image:build_z_image",
    "z-image-control-tiny": "models.tiny_z_image_control:build_z_image_control",
    "ltx2": "models.tiny_ltx2:build_ltx2",
    "flux-kontext-tiny": "models.tiny_flux:build_kontext",
    "flux2": "models.tiny_flux:build_klein",
    "flux2-dev-tiny": "models.tiny_flux:build_flux2_dev",
    "hunyuan15": "models.tiny_hunyuan15:build_t2v",
    "hunyuan15-i2v-tiny": "models.tiny_hunyuan15:build_i2v",
    "hunyuan-i2v-tiny": "models.tiny_hunyuan_i2v:build_i2v",
    "wan-vace-tiny": "models.tiny_vace:build_wan_vace",
    "kandinsky5": "models.tiny_kandinsky5:build_k5_t2v",
    "k5-i2v-tiny": "models.tiny_kandinsky5:build_k5_i2v",
    "skyreels-df-tiny": "models.tiny_wan_offshoots:build_skyreels_df",
    "chrono-edit-tiny": "models.tiny_wan_offshoots:build_chrono_edit",
    "lucy-edit-tiny": "models.tiny_wan_offshoots:build_lucy_edit",
    "stable-audio3": "models.tiny_audio:build_stable_audio3",
    "ace-step": "models.tiny_ace_step:build_ace_step",
    "krea2": "models.tiny_krea2:build_krea2",
    "ideogram4": "models.tiny_ideogram4:build_ideogram4",
    "chroma": "models.tiny_chroma:build_chroma",
}


def tiny_pipeline(key: str) -> Any:
    """The tiny pipeline BUILDERS[key] builds (a family, or a variant's preset id), in memory."""
    builder = BUILDERS[key]
    if isinstance(builder, str):
        module, name = builder.split(":")
        builder = getattr(importlib.import_module(module), name)
    return builder()


def build_tiny(preset: ModelPreset, dest: Path) -> None:
    """Build the tiny pipeline for a tiny preset (preset.tiny is True) with random weights from a
    fixed seed, and save_pretrained (safetensors) into dest."""
    if not preset.tiny:
        raise ValueError(f"{preset.id} is not a tiny preset: its weights come from {preset.repo}")
    builder = BUILDERS.get(preset.id) or BUILDERS.get(preset.family)
    if builder is None:
        raise ValueError(
            f"no tiny builder for {preset.id} (family {preset.family!r}); builders: {', '.join(BUILDERS)}"
        )
    quiet_hf_libraries()  # save_pretrained draws a "Writing model shards" bar per component
    pipe = tiny_pipeline(preset.id if preset.id in BUILDERS else preset.family)
    if type(pipe).__name__ != preset.pipeline:
        raise ValueError(
            f"{preset.id} names {preset.pipeline}, but the tiny {preset.family} is {type(pipe).__name__}"
        )
    pipe.save_pretrained(dest, safe_serialization=True)
    # Models a pipeline class does not hold but a render reads from its folder (LTX-2's latent
    # upsampler, models.ltx2_render), each in a folder of its own beside the components.
    for name, module in getattr(pipe, "saved_beside", {}).items():
        module.save_pretrained(dest / name, safe_serialization=True)


def write_wan_single_file(dest: Path, transformer: Any = None) -> Path:
    """The tiny Wan's transformer (the wan-tiny preset's, same weights), or `transformer` (a Wan
    transformer, e.g. a second expert), saved as one safetensors file in the original Wan key
    layout, as WanGP ships its model files; returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    state = (transformer if transformer is not None else wan_transformer()).state_dict()
    names = {key: wan_original_name(key) for key in state}
    # The inverse is checked against diffusers' own converter: each name must map back to itself.
    if diffusers_names(list(names.values())) != names:
        raise RuntimeError("the original Wan names written here do not convert back to diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest


# Diffusers' Wan names back to the original ones, in order (the last three swap norm2 and norm3).
_WAN_ORIGINAL_RENAMES = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("scale_shift_table", "modulation"),
    ("norm2", "norm__swap"),
    ("norm3", "norm2"),
    ("norm__swap", "norm3"),
    # VACE's context blocks (vace_blocks.N): their input and output projections.
    (".proj_in.", ".before_proj."),
    (".proj_out.", ".after_proj."),
)


# The fields of an int8 quanto module's state: renamed with their module, kept as they are.
_QUANTO_FIELDS = (".weight._data", ".weight._scale", ".input_scale", ".output_scale")


def wan_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A Wan transformer's state dict, plain or quantized by optimum-quanto, in the original names."""
    out = {}
    for key, value in state.items():
        field = next((name for name in _QUANTO_FIELDS if key.endswith(name)), "")
        if field:
            out[wan_original_name(f"{key.removesuffix(field)}.weight").removesuffix(".weight") + field] = (
                value
            )
        else:
            out[wan_original_name(key)] = value
    return out


def wan_original_name(key: str) -> str:
    # The head's modulation and projection sit under `head.` in the original model.
    if key == "scale_shift_table":
        return "head.modulation"
    if key.startswith("proj_out."):
        return "head.head." + key.removeprefix("proj_out.")
    for diffusers_name, original_name in _WAN_ORIGINAL_RENAMES:
        key = key.replace(diffusers_name, original_name)
    return key


def component_bytes(folder: Path) -> dict[str, int]:
    """Bytes on disk of each component sub-folder of a saved pipeline (what a preset records)."""
    return {
        sub.name: sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }


__all__ = [
    "build_tiny",
    "clip_tokenizer",
    "component_bytes",
    "hunyuan_vae",
    "llama_tokenizer",
    "qwen_tokenizer",
    "t5_tokenizer",
    "tiny_hunyuan",
    "write_wan_single_file",
]
