"""Audio models through `wanfarm render`: a WAV a user can play, with the settings WanGP reads back
(a RIFF chunk named `json`, as WanGP's shared/utils/audio_metadata.py at
deepbeepmeep/Wan2GP@8681e9f7 writes and reads it), and refusals that name the key."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from controller.catalogue_view import model_row
from controller.cli import main
from models.catalogue import catalogue, get_model
from models.settings import parse_settings, resolve
from models.soundtrack import Soundtrack
from models.wangp_definitions import Verdict, decide, parse_definition
from processing.audio import encode_wav, read_audio
from processing.metadata import read_metadata

MODEL = "stable-audio3-tiny"


def render(cache_dir: Path, *args: str | Path) -> int:
    return main(["render", *map(str, args), "--cache", str(cache_dir)])


def job_file(folder: Path, **settings: object) -> Path:
    path = folder / "job.json"
    path.write_text(json.dumps({"model_type": MODEL, "prompt": "a drum loop", "seed": 3} | settings))
    return path


def wangp_json_chunk(path: Path) -> dict[str, object]:
    """The settings as WanGP finds them: walk the RIFF chunks to the one named `json`."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    position = 12
    while position + 8 <= len(data):
        fourcc, (size,) = data[position : position + 4], struct.unpack_from("<I", data, position + 4)
        if fourcc == b"json":
            parsed = json.loads(data[position + 8 : position + 8 + size])
            assert isinstance(parsed, dict)
            return parsed
        position += 8 + size + (size & 1)
    raise AssertionError(f"{path} has no json chunk")


def test_a_wav_keeps_its_samples_and_settings(tmp_path: Path) -> None:
    wave = np.stack([np.sin(np.linspace(0, 60, 3000)), np.cos(np.linspace(0, 60, 3000))]) * 0.5
    path = tmp_path / "a.wav"
    encode_wav(Soundtrack(wave.astype(np.float32), 3000), path, {"prompt": "déjà vu", "seed": 4})
    track, info = read_audio(path)
    assert (info.codec, info.sample_rate, info.channels, info.samples) == ("pcm_s16le", 3000, 2, 3000)
    assert np.abs(track.samples - wave).max() < 1e-4  # 16-bit PCM
    assert wangp_json_chunk(path) == {"prompt": "déjà vu", "seed": 4} == read_metadata(path)


def test_the_tiny_audio_model_renders_a_wav_with_its_settings_and_reproduces_from_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    out, again = tmp_path / "out", tmp_path / "again"
    assert render(cache_dir, job_file(tmp_path, duration_seconds=1.5), "--out", out) == 0
    [wav] = list(out.glob("*.wav"))
    track, info = read_audio(wav)
    rule = get_model(MODEL).audio
    assert rule is not None
    assert (info.sample_rate, info.channels, info.samples) == (rule.sample_rate, 2, 6000)
    assert track.samples.std() > 0  # a decoded waveform, not silence
    settings = wangp_json_chunk(wav)
    assert settings["model_type"] == MODEL and settings["seed"] == 3
    assert settings["duration_seconds"] == 1.5 and settings["sample_solver"] == "pingpong"
    assert "resolution" not in settings and "video_length" not in settings
    assert settings["wanfarm"]["audio"] == {  # type: ignore[index]
        "codec": "pcm_s16le",
        "sample_rate": rule.sample_rate,
        "channels": 2,
        "seconds": 1.5,
    }
    # The output is a settings file too: rendering it gives the same waveform.
    assert render(cache_dir, wav, "--out", again) == 0
    [copy] = list(again.glob("*.wav"))
    assert np.array_equal(read_audio(copy)[0].samples, track.samples)
    # Euler instead of ping-pong is another sampler: another waveform from the same seed.
    euler = tmp_path / "euler"
    assert (
        render(cache_dir, job_file(tmp_path, duration_seconds=1.5, sample_solver="euler"), "--out", euler)
        == 0
    )
    [other] = list(euler.glob("*.wav"))
    assert not np.array_equal(read_audio(other)[0].samples, track.samples)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"duration_seconds": 60}, "duration_seconds: 60 is not allowed for stable-audio3-tiny"),
        ({"sample_solver": "rk4"}, "sample_solver: 'rk4' is not a sampler of stable-audio3-tiny"),
        ({"model_type": "wan-tiny", "video_length": 9, "duration_seconds": 5}, "duration_seconds: 5"),
    ],
)
def test_what_an_audio_job_cannot_render_is_refused_by_name(
    settings: dict[str, object],
    named: str,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert render(cache_dir, job_file(tmp_path, **settings), "--out", out, "--dry-run") == 2
    assert named in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


DEFINITIONS = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


def verdict(model_id: str) -> Verdict:
    definitions = json.loads(DEFINITIONS.read_text())["definitions"]
    return decide(parse_definition(model_id, definitions[model_id]), catalogue())


def test_wangps_stable_audio3_definitions_are_served_or_refused_by_name() -> None:
    for model_id, served in (
        ("stable_audio3_small", "stable-audio-3-small-music"),
        ("stable_audio3_medium", "stable-audio-3-medium"),
    ):
        found = verdict(model_id)
        assert found.preset is not None and found.preset.id == served, found.reason
        assert found.preset.audio is not None and found.preset.audio.sample_rate == 44100
    # The SFX checkpoint is a file of its own, loaded over Small music's folder (models.sa3_layout;
    # tests/integration/test_sa3_single_file.py).
    sfx = verdict("stable_audio3_small_sfx")
    assert sfx.preset is not None and sfx.preset.derived_from == "stable-audio-3-small-music", sfx.reason
    # ACE-Step's definitions: tests/integration/test_ace_step.py.


def test_a_wangp_audio_definitions_defaults_resolve_to_its_duration(tmp_path: Path) -> None:
    job = resolve(parse_settings({"model_type": "stable-audio-3-small-music", "prompt": "a loop"}), tmp_path)
    request = job.generations[0].request
    # WanGP's Stable Audio 3 defaults: 30 s at 8 ping-pong steps without CFG.
    assert (request.duration_seconds, request.steps, request.sample_solver) == (30, 8, "pingpong")
    assert (job.work.width, job.work.height, job.work.frames) == (30 * 44100, 1, 1)


def test_the_model_listing_sizes_an_audio_model_by_its_default_seconds() -> None:
    row = model_row(get_model("stable-audio-3-small-music"))
    assert (row.task, row.default_size, row.frames, row.fps) == ("t2a", "30 s", None, None)
    # 30 s of 44.1 kHz is 323 latent frames of 4096 samples: more than the weights alone.
    assert row.vram_gb["1"] > row.weights_gb
