"""The tiny HunyuanVideo 1.5's text path: its tokenizer puts the end of the pipeline's chat
template prefix where the real Qwen2.5 tokenizer does, so the pipeline's crop keeps the prompt."""

from __future__ import annotations

from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import format_text_input

from models.tiny_hunyuan15 import CROP_TOKENS, build_t2v


def test_the_pipelines_crop_starts_exactly_at_the_prompt() -> None:
    pipe = build_t2v()
    # The tiny vocabulary was fitted to this crop: a diffusers upgrade that moves it must fail here.
    assert pipe.prompt_template_encode_start_idx == CROP_TOKENS
    for prompt in ["a fox", "Leading capital", "\nnewline first", "日本語 and émigré", ""]:
        [messages] = format_text_input([prompt], pipe.system_message)
        ids = pipe.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if not isinstance(ids, list) else ids
        kept = pipe.tokenizer.decode(ids[CROP_TOKENS:])
        assert kept.startswith((prompt or " ") + "<|im_end|>"), kept
