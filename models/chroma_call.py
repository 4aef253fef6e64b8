"""Chroma's call as WanGP makes it (models/flux/flux_main.py and models/flux/modules/conditioner.py
at Wan2GP 8681e9f7): the prompt through T5 padded to 512 tokens with no attention mask, the text
attended whole in the transformer, real CFG with WanGP's default negative prompt when the job's is
empty.

Diffusers' ChromaPipeline masks the T5 padding (all but one pad token) in the encoder and the
transformer; WanGP's Chroma masks nothing. The embeddings are made here as WanGP makes them and
handed to the pipeline with a mask that keeps every token. Pure of torch at import: the controller
reads `guidance_problem` when it checks settings.
"""

from __future__ import annotations

from typing import Any

from models.preset import ModelPreset
from models.request import GenerationRequest

FAMILY = "chroma"
# WanGP's T5 length for the FLUX.1 family (flux_main.py load_t5(..., max_length=512)).
TEXT_TOKENS = 512


def guidance_problem(preset: ModelPreset, request: GenerationRequest) -> list[str]:
    """A refusal of a guidance scale below 1 on Chroma: WanGP runs CFG at any scale but 1 (below
    1 it leans towards the negative prompt), ChromaPipeline only above 1; [] otherwise."""
    if preset.family != FAMILY or request.guidance_scale >= 1:
        return []
    return [
        f"guidance_scale: {request.guidance_scale} is not supported by WanFarm yet on {preset.id}: "
        "WanGP runs CFG below 1 too, which ChromaPipeline does not; accepted: 1 or more"
    ]


# WanGP's Chroma schedule (models/flux/sampling.py get_schedule): linear steps from 1 to 0, shifted
# by exp(mu) / (exp(mu) + (1/t - 1)) with mu running linearly from 0.5 at 256 image tokens to 1.15 at
# 4096. The scheduler settings under which diffusers' FlowMatchEuler with ChromaPipeline's mu
# computes the same sigmas.
WANGP_SCHEDULE: dict[str, object] = {
    "use_dynamic_shifting": True,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "time_shift_type": "exponential",
    "shift_terminal": None,
    "invert_sigmas": False,
    "stochastic_sampling": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}


def schedule_problem(config: Any) -> str:
    """What in a Chroma pipeline's scheduler `config` would sample other sigmas than WanGP's; ""
    when nothing does."""
    other = [
        f"{key} {config.get(key)!r} (WanGP's schedule needs {value!r})"
        for key, value in WANGP_SCHEDULE.items()
        if config.get(key, None) != value
    ]
    return "; ".join(other)


def chroma_kwargs(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> dict[str, Any]:
    """The prompt arguments of a Chroma call (embeddings in place of the texts, one row per
    output); {} for other families. ValueError when the model's scheduler would not sample WanGP's
    schedule."""
    if preset.family != FAMILY:
        return {}
    if problem := schedule_problem(pipe.scheduler.config):
        raise ValueError(f"{preset.id}: its scheduler does not sample WanGP's Chroma schedule: {problem}")
    from models.flux_refs import WANGP_NEGATIVE  # WanGP's FLUX.1 default negative prompt (PIL behind it)

    kwargs: dict[str, Any] = {"prompt": None, "negative_prompt": None, "num_images_per_prompt": 1}
    kwargs["prompt_embeds"], kwargs["prompt_attention_mask"] = unmasked_embeds(
        pipe, request.prompt, request.batch_size
    )
    if request.guidance_scale > 1:
        negative = request.negative_prompt or WANGP_NEGATIVE
        embeds, mask = unmasked_embeds(pipe, negative, request.batch_size)
        kwargs["negative_prompt_embeds"], kwargs["negative_prompt_attention_mask"] = embeds, mask
    return kwargs


def unmasked_embeds(pipe: Any, text: str, rows: int) -> tuple[Any, Any]:
    """T5's last hidden state for `text` padded to 512 tokens, read without an attention mask as
    WanGP reads it, repeated `rows` times, and a mask keeping every token."""
    import torch

    ids = pipe.tokenizer(
        [text], padding="max_length", max_length=TEXT_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids.to(pipe._execution_device)
    with torch.inference_mode():
        embeds = pipe.text_encoder(ids, attention_mask=None)[0]
    embeds = embeds.to(dtype=pipe.text_encoder.dtype).repeat(rows, 1, 1)
    return embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
