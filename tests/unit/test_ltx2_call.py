"""The LTX-2 call's own arguments: plain CFG (LTX-2.3's extra guidance passes off), the audio guided
as the video, the cross-attention timestep rule of the model's version, and nothing for others."""

from __future__ import annotations

from types import SimpleNamespace

from accelerate import init_empty_weights
from diffusers import LTX2VideoTransformer3DModel

from models.catalogue import get_model
from models.ltx2_call import ltx2_kwargs
from tests.tiny_requests import tiny_wan_request


def pipe_with(**config: bool) -> SimpleNamespace:
    with init_empty_weights():
        transformer = LTX2VideoTransformer3DModel(num_layers=1, **config)
    return SimpleNamespace(transformer=transformer, tokenizer=SimpleNamespace(model_max_length=10**30))


def test_ltx2_calls_run_plain_guidance_for_video_and_audio() -> None:
    kwargs = ltx2_kwargs(pipe_with(), get_model("ltx-2-19b"), tiny_wan_request())
    assert (kwargs["stg_scale"], kwargs["modality_scale"], kwargs["guidance_rescale"]) == (0.0, 1.0, 0.0)
    assert kwargs["spatio_temporal_guidance_blocks"] is None
    # None: the pipeline takes each audio scale from its video one.
    assert kwargs["audio_guidance_scale"] is None and kwargs["audio_stg_scale"] is None
    assert kwargs["max_sequence_length"] == 1024  # the real Gemma's prompt length
    assert kwargs["use_cross_timestep"] is False  # LTX-2.0


def test_ltx23_transformers_take_the_other_modalitys_timestep() -> None:
    later = pipe_with(cross_attn_mod=True, audio_cross_attn_mod=True)
    assert ltx2_kwargs(later, get_model("ltx-2.3-22b"), tiny_wan_request())["use_cross_timestep"] is True


def test_other_families_get_nothing_from_the_ltx2_call() -> None:
    assert ltx2_kwargs(pipe_with(), get_model("wan-tiny"), tiny_wan_request()) == {}
