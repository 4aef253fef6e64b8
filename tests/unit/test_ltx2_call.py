"""The LTX-2 call's own arguments: the guidance passes a job reads (plain CFG without them, the
audio guided as the video), Lightricks' negative prompt where a job has none (as WanGP gives it),
the cross-attention timestep rule of the model's version, and nothing for other families."""

from __future__ import annotations

from types import SimpleNamespace

from accelerate import init_empty_weights
from diffusers import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

from models.catalogue import get_model
from models.ltx2_call import ltx2_kwargs
from models.ltx2_stages import Guidance
from tests.tiny_requests import tiny_wan_request


def pipe_with(**config: bool) -> SimpleNamespace:
    with init_empty_weights():
        transformer = LTX2VideoTransformer3DModel(num_layers=1, **config)
    return SimpleNamespace(transformer=transformer, tokenizer=SimpleNamespace(model_max_length=10**30))


def test_ltx2_calls_without_guidance_passes_run_plain_guidance_for_video_and_audio() -> None:
    kwargs = ltx2_kwargs(pipe_with(), get_model("ltx-2-19b"), tiny_wan_request(guidance_scale=4.0))
    assert (kwargs["stg_scale"], kwargs["modality_scale"], kwargs["guidance_rescale"]) == (0.0, 1.0, 0.0)
    assert kwargs["spatio_temporal_guidance_blocks"] is None
    assert kwargs["audio_guidance_scale"] == 4.0
    # None: the pipeline takes the audio's other scales from the video's.
    assert kwargs["audio_stg_scale"] is None and kwargs["audio_guidance_rescale"] is None
    assert kwargs["negative_prompt"] == DEFAULT_NEGATIVE_PROMPT  # WanGP's, the job having none
    assert kwargs["max_sequence_length"] == 1024  # the real Gemma's prompt length
    assert kwargs["use_cross_timestep"] is False  # LTX-2.0


def test_a_jobs_guidance_passes_and_negative_prompt_reach_the_call() -> None:
    passes = Guidance(audio_scale=7.0, modality=3.0, rescale=0.7, skip_blocks=(29,))
    request = tiny_wan_request(guidance_scale=3.0, ltx2_guidance=passes, negative_prompt="blurry")
    kwargs = ltx2_kwargs(pipe_with(), get_model("ltx-2-19b"), request)
    assert (kwargs["audio_guidance_scale"], kwargs["modality_scale"], kwargs["guidance_rescale"]) == (
        7.0,
        3.0,
        0.7,
    )
    assert kwargs["stg_scale"] == 1.0 and kwargs["spatio_temporal_guidance_blocks"] == [29]
    assert kwargs["negative_prompt"] == "blurry"


def test_ltx23_transformers_take_the_other_modalitys_timestep() -> None:
    later = pipe_with(cross_attn_mod=True, audio_cross_attn_mod=True)
    assert ltx2_kwargs(later, get_model("ltx-2.3-22b"), tiny_wan_request())["use_cross_timestep"] is True


def test_other_families_get_nothing_from_the_ltx2_call() -> None:
    assert ltx2_kwargs(pipe_with(), get_model("wan-tiny"), tiny_wan_request()) == {}
