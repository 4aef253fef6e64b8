"""ACE-Step 1.5 (WanGP architectures ace_step_v1_5, ace_step_v1_5_xl at Wan2GP 8681e9f7,
models/TTS/ace_step_handler.py and ace_step15/pipeline_ace_step15.py) served by diffusers'
AceStepPipeline as WanGP renders it without its 5 Hz LM: the prompt is the lyrics, alt_prompt the
caption, custom_settings the song's bpm, key, time signature and language; 8 turbo steps at the
shift nearest flow_shift; the waveform as decoded (WanGP's crossfaded tiles on a card), not
loudness-normalised. The tiny model renders a WAV through `wanfarm render` whose settings WanGP reads
back; what cannot be rendered is refused by name, and the LM definitions and ACE-Step v1 are refused
naming why. WanGP's transformer files (original layout) load into the pipeline's very weights."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from controller.cli import main
from models.ace_step_call import ace_kwargs, decode_song, decode_tiles, tile_seconds
from models.ace_step_layout import LayoutError, diffusers_states, load_into
from models.catalogue import catalogue, get_model
from models.prompts import expand_prompts
from models.settings import SettingsError, parse_settings, resolve
from models.song import Song
from models.tiny import build_tiny
from models.tiny_ace_step import write_ace_step_single_file
from models.wangp_definitions import Verdict, decide, parse_definition, with_references
from processing.audio import read_audio
from processing.metadata import read_metadata
from tests.torch_threads import one_torch_thread

MODEL = "ace-step-tiny"
TINY = get_model(MODEL)
DEFINITIONS = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
LYRICS = "[Verse]\nNeon rain on the city line\n[Chorus]\nHold me close"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp(MODEL)
    build_tiny(TINY, built)
    return built


@pytest.fixture(scope="module")
def pipe(folder: Path) -> Any:
    import diffusers

    loaded = diffusers.AceStepPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def render(cache_dir: Path, *args: str | Path) -> int:
    return main(["render", *map(str, args), "--cache", str(cache_dir)])


def job_file(folder: Path, **settings: object) -> Path:
    path = folder / "job.json"
    base = {"model_type": MODEL, "prompt": LYRICS, "alt_prompt": "slow synth-pop", "seed": 5}
    path.write_text(json.dumps(base | {"multi_prompts_gen_type": "FG"} | settings))
    return path


def request_of(settings: dict[str, object], folder: Path) -> Any:
    return (
        resolve(parse_settings({"model_type": MODEL, "prompt": LYRICS} | settings), folder)
        .generations[0]
        .request
    )


def song_of(pipe: Any, settings: dict[str, object], folder: Path) -> np.ndarray:
    request = request_of(settings | {"seed": 1}, folder)
    result = pipe(**ace_kwargs(request, torch.Generator("cpu").manual_seed(request.seed)))
    return np.stack([track.samples for track in decode_song(pipe, result, TINY)])


def test_the_tiny_model_renders_a_wav_that_wangp_reads_back_and_that_renders_again(
    tmp_path: Path, cache_dir: Path
) -> None:
    out, again = tmp_path / "out", tmp_path / "again"
    custom = {"bpm": 90, "keyscale": "Am", "timesignature": "3/4", "language": "en"}
    assert (
        render(cache_dir, job_file(tmp_path, duration_seconds=2, custom_settings=custom), "--out", out) == 0
    )
    [wav] = list(out.glob("*.wav"))
    track, info = read_audio(wav)
    assert (info.sample_rate, info.channels, info.samples) == (800, 2, 1600)
    assert track.samples.std() > 0
    settings = read_metadata(wav)
    assert settings is not None
    assert settings["model_type"] == MODEL and settings["prompt"] == LYRICS
    assert settings["alt_prompt"] == "slow synth-pop" and settings["custom_settings"] == custom
    assert settings["duration_seconds"] == 2 and settings["num_inference_steps"] == 8
    assert "resolution" not in settings and "video_length" not in settings
    # The output is a settings file too: rendering it gives the same song.
    assert render(cache_dir, wav, "--out", again) == 0
    [copy] = list(again.glob("*.wav"))
    assert np.array_equal(read_audio(copy)[0].samples, track.samples)


def test_the_caption_and_song_settings_are_what_the_model_is_conditioned_on(
    pipe: Any, tmp_path: Path
) -> None:
    first = song_of(pipe, {"alt_prompt": "slow synth-pop"}, tmp_path)
    assert np.array_equal(first, song_of(pipe, {"alt_prompt": "slow synth-pop"}, tmp_path))
    assert not np.array_equal(first, song_of(pipe, {"alt_prompt": "fast metal"}, tmp_path))
    assert not np.array_equal(
        first, song_of(pipe, {"alt_prompt": "slow synth-pop", "custom_settings": {"bpm": 80}}, tmp_path)
    )
    assert not np.array_equal(
        first, song_of(pipe, {"alt_prompt": "slow synth-pop", "flow_shift": 1}, tmp_path)
    )


def test_wangps_song_defaults_and_spellings_reach_the_call(tmp_path: Path) -> None:
    generator = torch.Generator("cpu")
    plain = ace_kwargs(request_of({}, tmp_path), generator)
    # WanGP's DiT-only defaults (model_mode 0): 120 bpm, C major, 2 beats, language unknown; 8 steps
    # at shift 3, the nearest to its flow_shift 5; latents out, decoded unnormalised.
    assert {k: plain[k] for k in ("bpm", "keyscale", "timesignature", "vocal_language", "shift")} == {
        "bpm": 120,
        "keyscale": "C major",
        "timesignature": "2",
        "vocal_language": "unknown",
        "shift": 3.0,
    }
    assert (plain["num_inference_steps"], plain["output_type"], plain["lyrics"]) == (8, "latent", LYRICS)
    custom = {"BPM": "95", "Key Scale": "f#m", "time_signature": "6/8", "lang": "FR"}
    asked = ace_kwargs(request_of({"custom_settings": custom, "flow_shift": 1.4}, tmp_path), generator)
    assert (asked["bpm"], asked["keyscale"], asked["timesignature"], asked["vocal_language"]) == (
        95,
        "F# minor",
        "6",
        "fr",
    )
    assert asked["shift"] == 1.0
    # The caption as WanGP reads alt_prompt: comment lines out, blank lines kept, ends trimmed.
    caption = ace_kwargs(
        request_of({"alt_prompt": "  synth-pop\n# a note\n\nsoft vocals  \n"}, tmp_path), generator
    )
    assert caption["prompt"] == "synth-pop\n\nsoft vocals"
    instrumental = ace_kwargs(
        request_of({"prompt": "[inst]", "custom_settings": {"language": "en"}}, tmp_path), generator
    )
    assert (instrumental["lyrics"], instrumental["vocal_language"]) == ("[Instrumental]", "unknown")


def test_the_waveform_is_written_as_decoded_not_normalised(pipe: Any, tmp_path: Path) -> None:
    request = request_of({"seed": 2}, tmp_path)
    kwargs = ace_kwargs(request, torch.Generator("cpu").manual_seed(2))
    ours = decode_song(pipe, pipe(**kwargs), TINY)[0].samples
    theirs = pipe(
        **(kwargs | {"output_type": "np", "generator": torch.Generator("cpu").manual_seed(2)})
    ).audios[0]
    # AceStepPipeline's own output is scaled to a -1 dBFS peak; WanGP writes the decode as it is.
    assert np.isclose(np.abs(theirs).max(), 10 ** (-1 / 20), atol=1e-4)
    assert np.allclose(ours * (np.abs(theirs).max() / np.abs(ours).max()), theirs, atol=1e-4)
    assert not np.isclose(np.abs(ours).max(), np.abs(theirs).max(), atol=1e-3)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"num_inference_steps": 20}, "num_inference_steps: 20 is not supported by WanFarm yet"),
        ({"duration_seconds": 2.5}, "duration_seconds: 2.5 is not supported by WanFarm yet"),
        ({"duration_seconds": 9}, "duration_seconds: 9 is not allowed for ace-step-tiny"),
        ({"custom_settings": {"bpm": 500}}, "custom_settings: bpm 500 is not valid"),
        ({"custom_settings": {"keyscale": "H major"}}, "custom_settings: keyscale 'H major' is not valid"),
        ({"custom_settings": {"language": "xx"}}, "custom_settings: language 'xx'"),
        ({"audio_prompt_type": "A"}, 'audio_prompt_type: "A" is not supported by WanFarm yet'),
        ({"model_mode": 1}, "model_mode: 1 is not supported by WanFarm yet"),
        ({"batch_size": 2}, "batch_size: WanGP renders one ACE-Step song a call"),
        ({"activated_loras": ["song.safetensors"]}, "activated_loras: LoRAs on ACE-Step are not supported"),
        ({"prompt": ""}, "prompt: ACE-Step reads the prompt as the lyrics"),
    ],
)
def test_what_wangp_would_render_otherwise_is_refused_by_name(
    settings: dict[str, object], named: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError) as refused:
        request_of(settings, tmp_path)
    assert any(problem.startswith(named) for problem in refused.value.problems), refused.value.problems


def verdicts() -> dict[str, Verdict]:
    definitions = json.loads(DEFINITIONS.read_text())["definitions"]
    parsed = with_references({k: parse_definition(k, v) for k, v in definitions.items()})
    return {k: decide(parsed[k], catalogue()) for k in parsed if k.startswith("ace_step")}


def test_wangps_ace_step_definitions_are_served_or_refused_naming_why() -> None:
    found = verdicts()
    assert (
        found["ace_step_v1_5"].preset is not None and found["ace_step_v1_5"].preset.id == "ace-step-1.5-turbo"
    )
    assert found["ace_step_v1_5_xl"].preset is not None
    assert found["ace_step_v1_5_xl"].preset.id == "ace-step-1.5-xl-turbo"
    for model_id in (
        f"ace_step_v1_5{xl}_turbo_lm_{lm}" for xl in ("", "_xl") for lm in ("0_6b", "1_7b", "4b")
    ):
        assert found[model_id].preset is None
        assert found[model_id].reason.startswith(
            "model setting text_encoder_URLs (ACE-Step 1.5's 5 Hz language model"
        )
    assert found["ace_step_v1"].reason == "architecture 'ace_step_v1' is not supported yet"


def test_another_transformer_variant_is_refused_by_name() -> None:
    definition = json.loads(DEFINITIONS.read_text())["definitions"]["ace_step_v1_5"]
    definition["model"] = definition["model"] | {"ace_step15_transformer_variant": "sft"}
    found = decide(replace(parse_definition("my_sft", definition), id="my_sft"), catalogue())
    assert found.preset is None and "ace_step15_transformer_variant 'sft'" in found.reason


def test_a_wangp_export_of_ace_step_1_5_renders_wangps_song(tmp_path: Path) -> None:
    # What WanGP's form writes for the model untouched (get_factory_settings: update_default_settings,
    # then defaults/ace_step_v1_5.json), the LM's sampling keys included.
    export = {
        "model_type": "ace_step_v1_5",
        "prompt": LYRICS,
        "alt_prompt": "Dreamy synth-pop with shimmering pads, soft vocals, and a slow dance groove.",
        "duration_seconds": 120,
        "num_inference_steps": 8,
        "guidance_scale": 1.0,
        "flow_shift": 5.0,
        "temperature": 0.85,
        "top_p": 0.9,
        "top_k": 0,
        "alt_guidance_scale": 2.5,
        "audio_prompt_type": "",
        "audio_scale": 0.5,
        "model_mode": 0,
        "custom_settings": None,
        "video_length": 0,
        "multi_prompts_gen_type": "FG",
        "seed": 7,
    }
    job = resolve(parse_settings(export), tmp_path)
    request = job.generations[0].request
    assert job.preset.id == "ace-step-1.5-turbo" and request.duration_seconds == 120
    assert request.song == Song(caption=export["alt_prompt"])  # type: ignore[arg-type]
    assert (job.work.width, job.work.height) == (120 * 48000, 1)
    # Left out, the caption is the model's own: the same song.
    alone = resolve(parse_settings({"model_type": "ace_step_v1_5_xl", "prompt": LYRICS}), tmp_path)
    assert alone.generations[0].request.song == request.song
    # WanGP writes video_length 0 for its audio models; a video model refuses it by name.
    with pytest.raises(SettingsError, match="video_length: 0 is not allowed for wan-tiny"):
        resolve(parse_settings({"model_type": "wan-tiny", "prompt": "a fox", "video_length": 0}), tmp_path)


ORIGINAL_KEYS = Path(__file__).parents[1] / "fixtures" / "wangp" / "ace_step15_tiny_original_keys.json"


def test_the_tiny_single_file_holds_wangps_own_names_and_shapes(pipe: Any, tmp_path: Path) -> None:
    path = write_ace_step_single_file(pipe, tmp_path / "ace_step_v1_5_tiny.safetensors")
    with safe_open(str(path), "pt") as file:
        written = {key: list(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    # The names and shapes of WanGP's own model class at the tiny's sizes (its LM modules aside).
    assert written == json.loads(ORIGINAL_KEYS.read_text())["keys"]
    # The LM's audio-code modules are in WanGP's files too; the DiT-only render does not read them.
    states = diffusers_states(tensors | {"tokenizer.quantizer.x": torch.zeros(1)})
    assert {name: len(state) for name, state in states.items()} == {
        "transformer": len(pipe.transformer.state_dict()),
        "condition_encoder": len(pipe.condition_encoder.state_dict()) - 1,  # its silence latent
    }
    with pytest.raises(LayoutError, match=r"not an ACE-Step 1\.5 transformer"):
        diffusers_states({"model.diffusion_model.blocks.0.weight": torch.zeros(1)})


def test_a_pipeline_over_the_single_file_holds_the_folders_weights_and_renders_its_song(
    pipe: Any, folder: Path, tmp_path: Path
) -> None:
    import diffusers

    path = write_ace_step_single_file(pipe, tmp_path / "ace_step_v1_5_tiny.safetensors")
    other = diffusers.AceStepPipeline.from_pretrained(folder)
    other.set_progress_bar_config(disable=True)
    with torch.no_grad():  # other weights first: the file must bring every tensor back
        for component in ("transformer", "condition_encoder"):
            for name, tensor in getattr(other, component).state_dict().items():
                if name != "silence_latent":
                    tensor.mul_(0.5).add_(0.1)
    load_into(other, str(path))
    for component in ("transformer", "condition_encoder"):
        for name, tensor in getattr(pipe, component).state_dict().items():
            assert torch.equal(getattr(other, component).state_dict()[name], tensor), name
    assert np.array_equal(song_of(other, {}, tmp_path), song_of(pipe, {}, tmp_path))
    with pytest.raises(LayoutError, match="does not fit transformer"):
        bad = tmp_path / "bad.safetensors"
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        save_file({k: v for k, v in tensors.items() if not k.startswith("decoder.norm_out")}, str(bad))
        load_into(other, str(bad))


def test_a_file_leaving_the_prompt_mode_out_sings_its_lyrics_as_one_song() -> None:
    # WanGP's default for ACE-Step 1.5 is "FG" (the whole prompt one generation); WanFarm's own
    # default, one job per paragraph, stays for models that say nothing.
    lyrics = "[Verse]\nNeon rain\n\n[Chorus]\nHold me close"
    for model_type in ("ace_step_v1_5", "ace-step-1.5-xl-turbo"):
        [job] = expand_prompts({"model_type": model_type, "prompt": lyrics})
        assert job["prompt"] == "[Verse]\nNeon rain\n[Chorus]\nHold me close"
    assert (
        len(expand_prompts({"model_type": "ace_step_v1_5", "prompt": lyrics, "multi_prompts_gen_type": "PG"}))
        == 2
    )
    assert len(expand_prompts({"model_type": "wan-tiny", "prompt": lyrics})) == 2


def test_long_songs_decode_in_wangps_crossfaded_tiles(pipe: Any) -> None:
    # WanGP's tile by card memory (none on a machine without CUDA: one decode).
    assert [tile_seconds(gb) for gb in (None, 8, 16, 141)] == [None, 20.0, 40.0, 80.0]
    hop = 32
    latents = torch.randn(1, 8, 50, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        whole = pipe.vae.decode(latents).sample
        assert torch.equal(decode_tiles(pipe.vae, latents, None, hop), whole)
        assert torch.equal(decode_tiles(pipe.vae, latents, 50, hop), whole)
        tiled = decode_tiles(pipe.vae, latents, 20, hop)  # windows 0-20, 15-35, 30-50, 45-50
        first = pipe.vae.decode(latents[..., :20]).sample
        second = pipe.vae.decode(latents[..., 15:35]).sample
    assert tiled.shape == whole.shape
    assert torch.equal(tiled[..., : 15 * hop], first[..., : 15 * hop])
    ramp = torch.linspace(0.0, 1.0, 5 * hop)
    faded = first[..., 15 * hop : 20 * hop] * (1 - ramp) + second[..., : 5 * hop] * ramp
    assert torch.allclose(tiled[..., 15 * hop : 20 * hop], faded)
    assert torch.equal(tiled[..., 20 * hop : 30 * hop], second[..., 5 * hop : 15 * hop])
    assert not torch.equal(tiled, whole)  # the seams are WanGP's, not one decode's
