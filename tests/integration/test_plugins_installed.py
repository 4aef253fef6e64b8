"""A plugin package installed with pip into the running venv: `wanfarm models` lists it,
`wanfarm render` runs it on a tiny model's output, and a farm's agent reports it and renders a job
through it (tests/fixtures/plugin_package, uninstalled after).

Each command runs as its own process, as a user's would, so it reads the installed entry points
afresh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.cli.client import FarmClient
from processing import plugins
from processing.image import read_png
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job

PACKAGE = Path(__file__).resolve().parent.parent / "fixtures" / "plugin_package"
DISTRIBUTION = "wanfarm-invert-plugin"
WANFARM = Path(sys.executable).parent / "wanfarm"


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Built from a copy: a build leaves build/ and egg-info folders beside the sources.
    source = tmp_path_factory.mktemp("plugin") / "package"
    shutil.copytree(PACKAGE, source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(source)], check=True)
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", DISTRIBUTION], check=True)
        plugins.refresh()  # this process forgets it too


@pytest.mark.usefixtures("plugin_installed")
def test_a_running_process_finds_a_plugin_installed_after_it_started() -> None:
    plugins.refresh()  # what an agent does at most every 10 s
    found = plugins.postprocessors()
    assert "invert" in found and found["invert"].keys == ("invert_colours",)


def wanfarm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WANFARM), *map(str, args)], capture_output=True, text=True, timeout=300)


def render(tmp_path: Path, cache_dir: Path, name: str, settings: dict[str, object]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(settings))
    out = tmp_path / name
    done = wanfarm("render", path, "--out", out, "--cache", cache_dir)
    assert done.returncode == 0, done.stderr
    [output] = [p for p in out.iterdir() if p.suffix in (".png", ".mp4")]
    return output


@pytest.mark.usefixtures("plugin_installed")
def test_wanfarm_models_lists_the_installed_plugin_beside_the_built_ins() -> None:
    listed = wanfarm("models")
    assert listed.returncode == 0, listed.stderr
    rows = {
        line.split()[0]: line.split()[1:] for line in listed.stdout.split("\nplugin ", 1)[1].splitlines()[1:]
    }
    assert rows["invert"] == ["wanfarm.postprocessors", DISTRIBUTION, "0.3.0", "invert_colours"]
    assert rows["repeat_frames"] == ["wanfarm.postprocessors", DISTRIBUTION, "0.3.0", "repeat_frames"]
    assert rows["film_grain"][:3] == ["wanfarm.postprocessors", "wanfarm", "0.1.0"]
    assert "broken plugin" not in listed.stdout


@pytest.mark.usefixtures("plugin_installed")
def test_an_image_renders_through_the_installed_plugin_and_its_metadata_says_so(
    tmp_path: Path, cache_dir: Path
) -> None:
    job = {"model_type": "flux-tiny", "prompt": "a sign", "resolution": "64x48", "seed": 9}
    plain = read_png(render(tmp_path, cache_dir, "plain", job))
    inverted_file = render(tmp_path, cache_dir, "inverted", job | {"invert_colours": True})
    assert np.array_equal(read_png(inverted_file), 255 - plain)  # PNG is lossless: exactly inverted
    metadata = read_metadata(inverted_file)
    assert metadata is not None
    assert metadata["invert_colours"] is True and metadata["inverted_by"] == "wanfarm-invert-plugin 0.3.0"
    assert metadata["wanfarm"]["postprocessors"] == ["invert"]


@pytest.mark.usefixtures("plugin_installed")
def test_a_plugin_that_adds_frames_raises_the_videos_frame_count_and_fps(
    tmp_path: Path, cache_dir: Path
) -> None:
    job = {"model_type": "wan-tiny", "prompt": "a fox", "resolution": "64x64", "video_length": 9, "seed": 4}
    video = render(tmp_path, cache_dir, "repeated", job | {"repeat_frames": 2})
    decoded = read_mp4(video)
    assert (decoded.frame_count, float(decoded.fps)) == (18, 32.0)  # wan-tiny renders 9 at 16 fps
    metadata = read_metadata(video)
    assert metadata is not None and metadata["output_fps"] == 32 and metadata["repeat_frames"] == 2


@pytest.mark.usefixtures("plugin_installed")
def test_the_plugins_own_refusal_reaches_the_user(tmp_path: Path) -> None:
    path = tmp_path / "image.json"
    path.write_text(json.dumps({"model_type": "flux-tiny", "repeat_frames": 2}))
    done = wanfarm("render", path, "--dry-run")
    assert done.returncode == 2
    assert "repeat_frames: 2 repeats a video's frames; this model renders an image" in done.stderr


@pytest.mark.usefixtures("plugin_installed")
def test_a_farm_agent_reports_the_plugin_and_renders_a_job_through_it(tmp_path: Path) -> None:
    with (
        ray_cluster([NodeSpec(("RTX 4090",))]) as cluster,
        running_farm(tmp_path / "farm", cluster.address, agents=1) as farm,
    ):
        client = FarmClient(farm.url)
        try:
            [agent] = client.agents()
            assert {"invert", "repeat_frames", "film_grain", "lanczos"} <= set(agent.plugins)
            submitted = client.submit([tiny("flux-tiny", resolution="64x48", invert_colours=True)])
            [job] = submitted.jobs
            done = wait_job(client, job.id)
            assert done.state == "succeeded", done
            [output] = done.outputs
            path = client.download(output.url, tmp_path / output.name)
        finally:
            client.close()
    metadata = read_metadata(path)
    assert metadata is not None and metadata["wanfarm"]["postprocessors"] == ["invert"]
    assert metadata["inverted_by"] == "wanfarm-invert-plugin 0.3.0"
