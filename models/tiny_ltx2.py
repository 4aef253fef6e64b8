"""The tiny LTX-2: LTX2Pipeline's real classes (audio-video transformer, video and audio VAEs, vocoder,
Gemma 3 text encoder with its connectors) shrunk to a few hundred kB, built offline from a seed.

The compression ratios are the real model's (32x spatial, 8x temporal video latents; 16 kHz mel
frames every 160 samples, 4x in time for the audio latents), so a tiny render has the frame grid,
sizes and audio length of a real one; only the widths are small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, PreTrainedTokenizerFast

from models.ltx2_layout import original_name
from models.ltx2_stages import MODELS, UPSAMPLER
from models.tiny import ltx_scheduler, seeded

# Gemma's specials in its own order: <pad>=0, <eos>=1, <bos>=2, <unk>=3; then the image markers
# Gemma 3 reserves (never produced from text, but the model's config names their ids).
GEMMA_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
TEXT_WIDTH = 32  # the Gemma hidden size: the connectors read every layer's hidden state at this width
TEXT_LAYERS = 2
# The farm's call pads a prompt to the tokenizer's length (models.ltx2_call; the real Gemma's is
# 1024): a tiny model cannot tell, and a short pad keeps a CPU render fast.
TOKENS = 128
_CORPUS = """\
a cat dancing in the rain, cinematic lighting, slow motion
a red fox running through a snowy forest at dawn
a warm sunny backyard, a woman and a man talk, the camera pans right
waves crashing on a rocky shore under a stormy sky, the sound of the wind
blurry, low quality, distorted, watermark, text, bad anatomy, worst quality
"""


def gemma_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-like BPE with Gemma's specials and <bos> prepended, as Gemma's tokenizer does."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    # A vocab_size the corpus cannot fill: training stops when every corpus word is one token.
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=GEMMA_SPECIALS,
        initial_alphabet=[*(chr(c) for c in range(32, 127)), "▁"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines() * 3, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",  # the pipeline pads Gemma prompts on the left
        model_max_length=TOKENS,
    )


def gemma_text(tokenizer: PreTrainedTokenizerFast) -> Any:
    """Gemma 3 (text model and SigLIP vision tower, as the real 12B encoder is built) in tiny."""
    vocab = tokenizer.get_vocab()
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_WIDTH,
            "intermediate_size": 64,
            "num_hidden_layers": TEXT_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": 1024,
            "sliding_window": 64,
            "pad_token_id": vocab["<pad>"],
            "eos_token_id": vocab["<eos>"],
            "bos_token_id": vocab["<bos>"],
        },
        # Never run for text prompts; the class always builds one.
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 8,
            "patch_size": 4,
        },
        mm_tokens_per_image=4,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
    )
    return seeded(lambda: Gemma3ForConditionalGeneration(config).eval())


def build_ltx2() -> Any:
    """The tiny LTX2Pipeline (text-to-video with its soundtrack)."""
    tokenizer = gemma_tokenizer()
    text_encoder = gemma_text(tokenizer)
    transformer = seeded(
        lambda: LTX2VideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            # Audio latent channels x mel bins after the audio VAE's 4x: the audio VAE's base width.
            audio_in_channels=4,
            audio_out_channels=4,
            audio_num_attention_heads=2,
            audio_attention_head_dim=4,
            audio_cross_attention_dim=8,
            num_layers=2,
            caption_channels=TEXT_WIDTH,
        )
    )
    # The connectors read the stacked hidden states of every Gemma layer plus its embeddings; LTX-2.0's
    # shared projection keeps them at the Gemma width (heads x head dim).
    connectors = seeded(
        lambda: LTX2TextConnectors(
            caption_channels=TEXT_WIDTH,
            text_proj_in_factor=TEXT_LAYERS + 1,
            video_connector_num_attention_heads=4,
            video_connector_attention_head_dim=8,
            video_connector_num_layers=1,
            video_connector_num_learnable_registers=None,
            audio_connector_num_attention_heads=4,
            audio_connector_attention_head_dim=8,
            audio_connector_num_layers=1,
            audio_connector_num_learnable_registers=None,
            connector_rope_base_seq_len=32,
        )
    )
    # LTX-2's 32x spatial (pixel patch 4, three spatial halvings) and 8x temporal compression.
    vae = seeded(
        lambda: AutoencoderKLLTX2Video(
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1),
            decoder_inject_noise=(False, False, False, False),
            upsample_residual=(False, False, False),
            upsample_factor=(1, 1, 1),
            decoder_causal=False,
            # Stated, as LTX-2's own config does: derived from the flags, they would count the
            # temporal-only block as a spatial one too.
            spatial_compression_ratio=32,
            temporal_compression_ratio=8,
        )
    )
    audio_vae = seeded(
        lambda: AutoencoderKLLTX2Audio(
            base_channels=4,
            ch_mult=(1, 2, 4),
            num_res_blocks=1,
            latent_channels=2,
            mel_bins=8,
        )
    )
    # Upsampling by 6*5*2*2*2 = 240 samples a mel frame at 24 kHz: 10 ms, the mel hop of 160
    # samples at 16 kHz, so the waveform lasts as long as the video.
    vocoder = seeded(
        lambda: LTX2Vocoder(
            in_channels=2 * 8,  # stereo mel bins
            hidden_channels=32,
            out_channels=2,
            resnet_kernel_sizes=[3],
            resnet_dilations=[[1, 3, 5]],
            output_sampling_rate=24000,
        )
    )
    pipe = LTX2Pipeline(
        scheduler=ltx_scheduler(),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
    )
    # Saved beside the pipeline's components (models.tiny.build_tiny): LTX2Pipeline holds no
    # upsampler, the second of two render stages reads it from the folder.
    pipe.saved_beside = {UPSAMPLER: latent_upsampler()}  # type: ignore[attr-defined]
    return pipe


def latent_upsampler() -> Any:
    """LTX-2's x2 spatial latent upsampler at the tiny latent width (GroupNorm needs 32 channels)."""
    return seeded(lambda: LTX2LatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1))


# The tiny distilled LoRA's rank and the attention projections it adapts (each block's video self
# attention), in the original LTX-2 key layout WanGP's distilled LoRA files use.
LORA_RANK = 4
_LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")


def write_distilled_lora(folder: Path, transformer: Any = None) -> Path:
    """A LoRA for the tiny transformer (or `transformer`) written into `folder` under the name the
    tiny model's second stage asks for (models.ltx2_stages.MODELS); returns its path. Its weights
    are large enough that the refining pass visibly differs with it."""
    import torch
    from safetensors.torch import save_file

    if transformer is None:
        transformer = build_ltx2().transformer
    generator = torch.Generator().manual_seed(7)
    tensors = {}
    for block in range(len(transformer.transformer_blocks)):
        for target in _LORA_TARGETS:
            layer = transformer.get_submodule(f"transformer_blocks.{block}.{target}")
            name = f"diffusion_model.transformer_blocks.{block}.{target}"
            shape_a, shape_b = (LORA_RANK, layer.in_features), (layer.out_features, LORA_RANK)
            tensors[f"{name}.lora_A.weight"] = torch.randn(shape_a, generator=generator)
            tensors[f"{name}.lora_B.weight"] = torch.randn(shape_b, generator=generator)
    path = folder / MODELS["ltx2-tiny"].distilled_lora
    save_file(tensors, str(path))
    return path


def write_ltx2_single_file(dest: Path, transformer: Any = None) -> Path:
    """The tiny LTX-2 transformer (the ltx2-tiny preset's, same weights), or `transformer`, saved as
    one safetensors file in the original key layout; returns `dest`."""
    from safetensors.torch import save_file

    from models.single_file import diffusers_names

    if transformer is None:
        transformer = build_ltx2().transformer
    state = transformer.state_dict()
    names = {key: original_name(key) for key in state}
    # Checked against diffusers' own converter: each name must map back to itself.
    if diffusers_names(list(names.values()), "LTX2VideoTransformer3DModel") != names:
        raise RuntimeError("the original LTX-2 names written here do not convert back to diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest


def write_ltx2_connectors_file(dest: Path, connectors: Any = None) -> Path:
    """The tiny LTX-2's video and audio text connectors (the ltx2-tiny preset's, same weights), or
    those of `connectors`, saved as one safetensors file in WanGP's layout (its distilled 19B's
    connectors file, models.ltx2_connectors); returns `dest`."""
    from safetensors.torch import save_file

    from models.ltx2_connectors import diffusers_names
    from models.ltx2_connectors import original_name as connector_name

    if connectors is None:
        connectors = build_ltx2().connectors
    parts = ("video_connector.", "audio_connector.")  # the text projection is not the file's
    state = {key: t for key, t in connectors.state_dict().items() if key.startswith(parts)}
    names = {key: connector_name(key) for key in state}
    # Checked against the reader: each name must map back to itself.
    if diffusers_names(names.values()) != names:
        raise RuntimeError("the WanGP connector names written here do not read back as diffusers' names")
    save_file({names[key]: tensor.contiguous() for key, tensor in state.items()}, str(dest))
    return dest
