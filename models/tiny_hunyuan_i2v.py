"""HunyuanVideo I2V in tiny (HunyuanVideoImageToVideoPipeline, random weights, built offline).

WanGP's hunyuan_i2v (deepbeepmeep/Wan2GP 8681e9f7, models/hyvideo/hunyuan.py: 'HYVideo-T/2' with
i2v_condition_type 'token_replace', 16 latent channels, guidance embedded, image embeddings of the
LLaVA encoder taken every 4th) is diffusers' pipeline with a token_replace transformer: the start
image's latent replaces the first latent frame at every step and is modulated as timestep 0.

The text encoder is a LLaVA (a CLIP vision tower of 336 px in 14 px patches, so its 576 image
tokens sit where the pipeline's prompt template expects them, a projector and a 3-layer Llama);
the tokenizer is trained on the template's words so the template keeps its real length (the
pipeline crops its first 103 tokens), with `<image>` a token of its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from models.hunyuan_layout import hunyuan_to_original
from models.tiny import (
    LLAMA_SPECIALS,
    PROMPTS,
    QWEN_SPLIT,
    byte_level_bpe,
    clip_text,
    hunyuan_transformer,
    hunyuan_vae,
    seeded,
    train_bpe,
)

IMAGE_TOKEN = "<image>"
_LLAMA_SPLIT = QWEN_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")  # Llama 3 groups up to 3 digits


def build_i2v() -> Any:
    """The tiny HunyuanVideo I2V pipeline."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

    tokenizer = _tokenizer(str(DEFAULT_PROMPT_TEMPLATE["template"]))
    tokenizer_2, text_encoder_2 = clip_text()
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=seeded(lambda: _llava(tokenizer)),
        tokenizer=tokenizer,
        transformer=seeded(transformer),
        vae=hunyuan_vae(),
        # hunyuanvideo-community/HunyuanVideo-I2V's scheduler: Euler over flow sigmas.
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        image_processor=_image_processor(),
    )


def transformer() -> Any:
    """HunyuanVideo's transformer in tiny (models.tiny's shape) with token_replace."""
    return hunyuan_transformer("token_replace")


def _tokenizer(template: str) -> Any:
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [*LLAMA_SPECIALS, IMAGE_TOKEN]
    tokenizer = byte_level_bpe(_LLAMA_SPLIT)
    pieces = re.split("|".join(map(re.escape, specials)), template.format(""))
    train_bpe(tokenizer, specials, pre_tokenizers.ByteLevel.alphabet(), [*PROMPTS.splitlines(), *pieces] * 3)
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
        additional_special_tokens=[*LLAMA_SPECIALS[2:], IMAGE_TOKEN],
        model_max_length=4096,
    )


def _llava(tokenizer: Any) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vocab = tokenizer.get_vocab()
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,  # the pipeline reads hidden_states[-3]
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=vocab["<|begin_of_text|>"],
        eos_token_id=vocab["<|eot_id|>"],
        pad_token_id=vocab["<|end_of_text|>"],
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,  # LLaVA reads the second-last layer
        num_attention_heads=2,
        image_size=336,
        patch_size=14,
        projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab[IMAGE_TOKEN],
        # The pipeline pads the expanded image tokens with the config's pad_token_id, which
        # transformers 5's LlavaConfig keeps as an extra attribute (not a declared argument).
        pad_token_id=vocab["<|end_of_text|>"],  # type: ignore[call-arg]
    )
    return LlavaForConditionalGeneration(config).eval()


def _image_processor() -> Any:
    from transformers import CLIPImageProcessor

    # LLaVA-1.5's CLIP-L/336 preprocessing: shortest side to 336, centre crop 336.
    return CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})


def write_single_file(path: Path) -> Path:
    """The tiny I2V transformer (the folder's weights: same seed) in WanGP's original layout."""
    from safetensors.torch import save_file

    state = hunyuan_to_original(seeded(transformer).state_dict())
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path
