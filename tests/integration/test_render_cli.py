"""`wanfarm render` end to end on the tiny models: files a user can open, and clear refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from models.catalogue import get_model
from processing.image import read_png
from processing.metadata import read_metadata
from processing.video import read_mp4

VIDEO_MODELS = {"wan-tiny": 16, "ltx-tiny": 24}
IMAGE_MODELS = ("flux-tiny", "qwen-image-tiny")


def render(cache_dir: Path, *args: str | Path) -> int:
    return main(["render", *map(str, args), "--cache", str(cache_dir)])


def write_settings(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("model", "fps"), VIDEO_MODELS.items())
def test_each_tiny_video_model_renders_an_mp4_with_its_settings(
    model: str, fps: int, tmp_path: Path, cache_dir: Path
) -> None:
    settings = {"model_type": model, "prompt": "a fox", "resolution": "64x32", "video_length": 17, "seed": 5}
    out = tmp_path / "out"
    assert render(cache_dir, write_settings(tmp_path, "job.json", settings), "--out", out) == 0
    [video] = list(out.glob("*.mp4"))
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height) == (17, 64, 32)
    assert float(decoded.fps) == fps
    metadata = read_metadata(video)
    assert metadata is not None
    assert metadata["model_type"] == model and metadata["seed"] == 5 and metadata["video_length"] == 17
    assert metadata["creation_date"] and "generation_time" in metadata


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_each_tiny_image_model_renders_a_png_with_its_settings(
    model: str, tmp_path: Path, cache_dir: Path
) -> None:
    settings = {"model_type": model, "prompt": "a sign", "resolution": "64x48", "seed": 9}
    out = tmp_path / "out"
    assert render(cache_dir, write_settings(tmp_path, "job.json", settings), "--out", out) == 0
    [image] = list(out.glob("*.png"))
    assert read_png(image).shape == (48, 64, 3)
    metadata = read_metadata(image)
    assert metadata is not None and metadata["model_type"] == model and metadata["seed"] == 9


def test_rendering_an_outputs_embedded_settings_reproduces_it(tmp_path: Path, cache_dir: Path) -> None:
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    settings = {
        "model_type": "wan-tiny",
        "prompt": "snow",
        "resolution": "64x64",
        "video_length": 9,
        "seed": -1,
    }
    assert render(cache_dir, write_settings(tmp_path, "job.json", settings), "--out", first_out) == 0
    [original] = list(first_out.glob("*.mp4"))
    assert render(cache_dir, original, "--out", second_out) == 0
    [again] = list(second_out.glob("*.mp4"))
    seed = read_metadata(original)["seed"]  # type: ignore[index]
    assert read_metadata(again)["seed"] == seed  # type: ignore[index]
    assert np.array_equal(read_mp4(original).frames, read_mp4(again).frames)


def test_a_different_seed_gives_different_frames(tmp_path: Path, cache_dir: Path) -> None:
    jobs = [{"model_type": "wan-tiny", "prompt": "snow", "video_length": 9, "seed": s} for s in (1, 2)]
    assert render(cache_dir, write_settings(tmp_path, "jobs.json", jobs), "--out", tmp_path / "out") == 0
    a, b = sorted((tmp_path / "out").glob("*.mp4"))
    assert not np.array_equal(read_mp4(a).frames, read_mp4(b).frames)


def test_a_queue_zip_with_an_attachment_renders(tmp_path: Path, cache_dir: Path) -> None:
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        manifest = [
            {"id": 1, "params": {"model_type": "flux-tiny", "prompt": "a", "resolution": "64x64", "seed": 1}},
            {"id": 2, "params": {"model_type": "wan-tiny", "prompt": "b", "video_length": 5, "seed": 2}},
        ]
        zf.writestr("queue.json", json.dumps(manifest))
    out = tmp_path / "out"
    assert render(cache_dir, archive, "--out", out) == 0
    assert len(list(out.glob("*.png"))) == 1 and len(list(out.glob("*.mp4"))) == 1


def test_dry_run_validates_and_writes_nothing(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = write_settings(
        tmp_path, "job.json", {"model_type": "t2v", "resolution": "832x480", "video_length": 81}
    )
    assert render(cache_dir, settings, "--out", tmp_path / "out", "--dry-run") == 0
    assert not (tmp_path / "out").exists()
    printed = capsys.readouterr().out
    assert f"{get_model('t2v').id} 832x480 frames=81" in printed
    assert "1 job(s) valid; dry run, nothing rendered" in printed


def test_a_local_render_reads_the_users_own_start_image_wherever_it_is(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Unlike the farm, `wanfarm render` runs on the user's machine: their paths are theirs to read.
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "start.png").write_bytes(b"png")
    (tmp_path / "jobs").mkdir()
    i2v = {"model_type": "i2v", "prompt": "a lighthouse"}
    relative = write_settings(tmp_path / "jobs", "a.json", i2v | {"image_start": "../images/start.png"})
    absolute = write_settings(
        tmp_path / "jobs", "b.json", i2v | {"image_start": str(tmp_path / "images/start.png")}
    )
    assert render(cache_dir, relative, absolute, "--dry-run") == 0
    assert "2 job(s) valid" in capsys.readouterr().out


BAD_SETTINGS = {
    "unknown model": ({"model_type": "sora-9"}, "unknown model 'sora-9'"),
    "frames not 4k+1": ({"model_type": "wan-tiny", "video_length": 10}, "video_length: 10 is not allowed"),
    # WanGP floors a size to the model's block (16 here): 31 wide renders 16, under the minimum.
    "too small once floored": ({"model_type": "wan-tiny", "resolution": "31x64"}, "between 32 and 256"),
    "a WanGP feature not rendered yet": (
        {"model_type": "wan-tiny", "temporal_upsampling": "film2"},
        "temporal_upsampling: 'film2' is not supported by WanFarm yet",
    ),
    "negative steps": ({"model_type": "wan-tiny", "num_inference_steps": -1}, "num_inference_steps"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_bad_settings_exit_2_with_a_message_and_write_nothing(
    case: str, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = BAD_SETTINGS[case]
    good = write_settings(tmp_path, "a-good.json", {"model_type": "wan-tiny", "video_length": 5})
    bad = write_settings(tmp_path, "b-bad.json", data)
    out = tmp_path / "out"
    assert render(cache_dir, good, bad, "--out", out) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()  # the good job was not rendered either


def test_malformed_json_exits_2_naming_the_line(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "wan-tiny",\n "seed": }')
    assert render(cache_dir, bad, "--out", tmp_path / "out") == 2
    assert "malformed JSON at line 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hostile_zip_exits_2_and_writes_nothing_outside(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "queue.json",
            json.dumps([{"id": 1, "params": {"model_type": "wan-tiny", "image_start": "../escape.png"}}]),
        )
        zf.writestr("../escape.png", b"gotcha")
    assert render(cache_dir, archive, "--out", tmp_path / "out") == 2
    assert "evil.zip" in capsys.readouterr().err
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "out").exists()


def test_not_a_zip_exits_2(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "queue.zip"
    fake.write_text("this is not an archive")
    assert render(cache_dir, fake, "--out", tmp_path / "out") == 2
    assert "zip" in capsys.readouterr().err.lower()


def test_an_attention_kernel_this_machine_lacks_exits_2(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = write_settings(tmp_path, "job.json", {"model_type": "wan-tiny", "video_length": 5})
    assert render(cache_dir, settings, "--out", tmp_path / "out", "--attention", "sage2") == 2
    assert "--attention: attention 'sage2' is" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_console_script_exit_codes(tmp_path: Path, cache_dir: Path) -> None:
    wanfarm = shutil.which("wanfarm", path=str(Path(sys.executable).parent))
    assert wanfarm, "the wanfarm console script is installed with the package"
    bad = write_settings(tmp_path, "bad.json", {"model_type": "nope"})
    env = os.environ | {"WANFARM_CACHE": str(cache_dir)}
    result = subprocess.run(
        [wanfarm, "render", str(bad), "--dry-run"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr
    listing = subprocess.run([wanfarm, "models", "--json"], capture_output=True, text=True, env=env)
    assert listing.returncode == 0
    assert {row["id"] for row in json.loads(listing.stdout)} >= {"wan-tiny", "flux-tiny"}


def test_an_interrupted_render_exits_130_and_leaves_no_partial_file(tmp_path: Path, cache_dir: Path) -> None:
    wanfarm = shutil.which("wanfarm", path=str(Path(sys.executable).parent))
    assert wanfarm
    long_job = {
        "model_type": "wan-tiny",
        "resolution": "256x256",
        "video_length": 33,
        "num_inference_steps": 200,
    }
    settings = write_settings(tmp_path, "long.json", long_job)
    out = tmp_path / "out"
    env = os.environ | {"WANFARM_CACHE": str(cache_dir)}
    proc = subprocess.Popen(
        [wanfarm, "render", str(settings), "--out", str(out)], stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until it is denoising, then press Ctrl-C
        if "denoising" in line:
            break
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert not list(out.glob("*.mp4")) and not list(out.glob(".*"))


def test_a_long_video_renders_in_sliding_windows_to_the_length_wangp_gives(
    tmp_path: Path, cache_dir: Path
) -> None:
    # 25 frames in windows of 9 (WanGP: 9 new, then 8 + 8 after the one shared frame), on the tiny
    # Wan 2.2 5B: text for the first window, the video's last frame to start each next one.
    settings = {
        "model_type": "wan-ti2v-tiny",
        "prompt": "a fox",
        "video_length": 25,
        "sliding_window_size": 9,
    }
    out = tmp_path / "out"
    assert render(cache_dir, write_settings(tmp_path, "job.json", settings | {"seed": 3}), "--out", out) == 0
    [video] = list(out.glob("*.mp4"))
    assert read_mp4(video).frame_count == 25
    metadata = read_metadata(video)
    assert metadata is not None and metadata["video_length"] == 25 and metadata["sliding_window_size"] == 9
    assert sorted(p.name for p in out.iterdir()) == [video.name]  # no window's file left behind
