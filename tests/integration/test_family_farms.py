"""Model families through one farm: a queue.zip (or a plain submit) renders on a declared agent and
the output is what each family gives. One Ray cluster and one running farm serve every test here, as
a cluster start costs more than most of these renders; a family that needs a cluster of its own
(plugins installed mid-session, agents killed, S3) keeps its own module.

The agent inherits, from the environment set before the cluster starts: the tiny RIFE's weights
(random, in the released file's layout) and a folder of WanGP definitions naming a VACE module
served over loopback HTTP (as vace_14B_fusionix does, Wan2GP 8681e9f7)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from controller.cli import main
from controller.cli.client import FarmClient
from controller.farm import Farm
from models.catalogue import MODELS_ENV, catalogue
from models.catalogue import definitions as catalogue_definitions
from models.tiny_vace import write_vace_files
from processing import rife
from processing.image import read_png
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job
from tests.integration.test_wan_offshoots_render import write_video as write_bar_video
from tests.unit.loopback_http import Asked, Reply, scripted_server
from tests.unit.test_vace import grey, write_video

VACE_JOB = {
    "prompt": "a fox",
    "seed": 5,
    "video_length": 9,
    "video_prompt_type": "V",
    "video_guide": "guide.mp4",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("family-farms")
    (folder / "files").mkdir()
    write_vace_files(folder / "files")
    write_video(folder / "guide.mp4", [grey(20 * i, (64, 64)) for i in range(9)], fps=16)
    return folder


@pytest.fixture(scope="module")
def farm(folder: Path) -> Iterator[Farm]:
    def script(request: Asked) -> Reply:
        path = folder / "files" / request.target.removeprefix("/files/")
        found = path.is_file()
        return Reply(200 if found else 404, path.read_bytes() if found else b"", "application/octet-stream")

    models = folder / "models"
    models.mkdir()
    try:
        with pytest.MonkeyPatch.context() as env, scripted_server(script) as base_url:
            # Set before the cluster starts: its agents inherit them; undone after the module.
            env.setenv(rife.WEIGHTS_ENV, str(rife.save_tiny_weights(folder / "rife-tiny.pkl")))
            env.setenv(MODELS_ENV, str(models))
            write_vace_definitions(models, base_url)
            catalogue.cache_clear()
            catalogue_definitions.cache_clear()
            with (
                ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64)]) as cluster,
                running_farm(folder / "data", cluster.address, agents=1) as farm,
            ):
                yield farm
    finally:
        catalogue.cache_clear()
        catalogue_definitions.cache_clear()


def write_vace_definitions(models: Path, base_url: str) -> None:
    """WanGP's way: the module's own definition, and one naming it by model type over a t2v file."""
    module = {
        "architecture": "wan-vace-tiny",
        "modules": [[f"{base_url}/files/tiny_vace_module.safetensors"]],
    }
    finetune = {"architecture": "wan-vace-tiny", "modules": ["tiny_vace_module"]}
    finetune["URLs"] = [f"{base_url}/files/tiny_vace_backbone.safetensors"]
    for name, model in (("tiny_vace_module", module), ("tiny_vace_finetune", finetune)):
        (models / f"{name}.json").write_text(json.dumps({"model": model}))


@pytest.fixture()
def client(farm: Farm) -> Iterator[FarmClient]:
    http = FarmClient(farm.url)
    yield http
    http.close()


def render_queue(
    client: FarmClient, folder: Path, entries: list[dict[str, Any]], files: dict[str, bytes]
) -> list[Path]:
    """Submits a queue.zip of these entries carrying these files; each job's one output, downloaded."""
    archive = folder / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": i, "params": p} for i, p in enumerate(entries, 1)]))
        for name, data in files.items():
            zipped.writestr(name, data)
    finished = [wait_job(client, job.id) for job in client.submit_queue(archive).jobs]
    assert [job.state for job in finished] == ["succeeded"] * len(entries), [job.error for job in finished]
    paths = []
    for n, job in enumerate(finished):
        [output] = job.outputs
        paths.append(client.download(output.url, folder / f"{n}-{output.name}"))
    return paths


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", size, colour).save(image, format="PNG")
    return image.getvalue()


def test_a_wan_i2v_job_renders_from_the_start_image_its_queue_zip_carries(
    client: FarmClient, tmp_path: Path
) -> None:
    """The tiny Wan 2.1 image-to-video (the network of WanGP's Fun InP models): the start image travels
    as an upload the agent fetches; the clip has the image's aspect ratio and names the image."""
    entry = {
        "model_type": "wan-i2v-tiny",
        "prompt": "a fox turns",
        "resolution": "64x64",
        "video_length": 5,
        "num_inference_steps": 2,
        "seed": 5,
        "image_prompt_type": "S",
        "image_start": "start.png",
    }
    [path] = render_queue(client, tmp_path, [entry], {"start.png": png((96, 48), (200, 30, 30))})
    # The 2:1 image on a 64x64 canvas: 96x48 (WanGP's fit of the canvas's pixels to the image).
    decoded = read_mp4(path)
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 96, 48)
    metadata = read_metadata(path)
    assert metadata is not None and metadata["model_type"] == "wan-i2v-tiny"
    assert metadata["image_start"] == "start.png"


def test_a_hunyuan_i2v_job_renders_from_the_start_image_its_queue_zip_carries(
    client: FarmClient, tmp_path: Path
) -> None:
    """The tiny HunyuanVideo I2V (WanGP's hunyuan_i2v network in tiny), from an uploaded start image."""
    entry = {
        "model_type": "hunyuan-i2v-tiny",
        "prompt": "a fox turns",
        "resolution": "64x64",
        "video_length": 5,
        "seed": 4,
        "image_prompt_type": "S",
        "image_start": "start.png",
    }
    [path] = render_queue(client, tmp_path, [entry], {"start.png": png((64, 32), (30, 160, 40))})
    # The 2:1 image on a 64x64 canvas, each side a multiple of 16 (WanGP's fit): 96x48.
    decoded = read_mp4(path)
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 96, 48)
    metadata = read_metadata(path)
    assert metadata is not None and metadata["model_type"] == "hunyuan-i2v-tiny"
    assert metadata["image_start"] == "start.png"


def test_a_z_image_control_job_is_steered_by_the_image_its_queue_zip_carries(
    client: FarmClient, tmp_path: Path
) -> None:
    """The tiny Z-Image ControlNet: the control image (image_guide, V in video_prompt_type) is uploaded;
    the output has its aspect ratio, names it and its weight, and differs from the same job without it."""
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = (230, 200, 40)
    image = io.BytesIO()
    Image.fromarray(pixels).save(image, format="PNG")
    plain = {"model_type": "z-image-control-tiny", "prompt": "a fox", "resolution": "64x64", "seed": 5}
    guided = plain | {"video_prompt_type": "V", "image_guide": "pose.png", "control_net_weight": 0.6}
    # The plain job at the control image's size: only the control differs.
    plain["resolution"] = "96x48"
    paths = render_queue(client, tmp_path, [guided, plain], {"pose.png": image.getvalue()})
    steered, alone = (read_png(path) for path in paths)
    # The 2:1 image on a 64x64 canvas: 96x48 (its aspect at the canvas's pixels, sides rounded to 16).
    assert steered.shape == alone.shape == (48, 96, 3)
    assert not np.array_equal(np.asarray(steered), np.asarray(alone))
    metadata = read_metadata(paths[0])
    assert metadata is not None and metadata["model_type"] == "z-image-control-tiny"
    assert metadata["image_guide"] == "pose.png" and metadata["video_prompt_type"] == "V"
    assert metadata["control_net_weight"] == 0.6


def test_a_qwen_edit_job_renders_the_edit_of_the_image_its_queue_zip_carries(
    client: FarmClient, tmp_path: Path
) -> None:
    """The tiny Qwen-Image-Edit: the input image (its image_refs) is uploaded; the edit has its aspect."""
    entry = {
        "model_type": "qwen-image-edit-tiny",
        "prompt": "add a hat",
        "resolution": "64x64",
        "num_inference_steps": 2,
        "seed": 5,
        "image_refs": ["subject.png"],
    }
    [path] = render_queue(client, tmp_path, [entry], {"subject.png": png((128, 64), (200, 30, 30))})
    # The 2:1 image on a 64x64 canvas: 96x32 (sides rounded to the tiny model's block of 32).
    assert read_png(path).shape == (32, 96, 3)
    metadata = read_metadata(path)
    assert metadata is not None and metadata["model_type"] == "qwen-image-edit-tiny"
    assert metadata["image_refs"] == ["subject.png"]


def test_the_wan_editors_render_from_a_queue_zip_with_their_files(client: FarmClient, tmp_path: Path) -> None:
    """ChronoEdit from its start image, Lucy Edit from its source video, SkyReels V2 DF from a prompt."""
    write_bar_video(tmp_path / "clip.mp4", 9)
    entries = [
        {"model_type": "chrono-edit-tiny", "prompt": "a smile", "image_start": "photo.png", "seed": 1},
        {
            "model_type": "lucy-edit-tiny",
            "prompt": "red",
            "video_guide": "clip.mp4",
            "video_length": 9,
            "seed": 1,
        },
        {"model_type": "skyreels-df-tiny", "prompt": "a fox", "seed": 1},
    ]
    files = {"photo.png": png((64, 64), (200, 60, 30)), "clip.mp4": (tmp_path / "clip.mp4").read_bytes()}
    paths = render_queue(client, tmp_path, entries, files)
    assert read_png(paths[0]).shape == (64, 64, 3)
    assert read_mp4(paths[1]).frame_count == 9 and read_mp4(paths[2]).frame_count == 17
    for path, model in zip(paths, ("chrono-edit-tiny", "lucy-edit-tiny", "skyreels-df-tiny"), strict=True):
        metadata = read_metadata(path)
        assert metadata is not None and metadata["model_type"] == model


def test_a_t2v_file_with_a_vace_module_renders_as_the_vace_folder(
    client: FarmClient, folder: Path, tmp_path: Path
) -> None:
    """A VACE definition made of a text-to-video file and WanGP's VACE module: the agent fetches both by
    their URLs, merges the module's blocks into the transformer and renders the queue.zip's control
    video into the video the tiny VACE's own folder renders on this machine."""
    guide = (folder / "guide.mp4").read_bytes()
    [video] = render_queue(
        client, tmp_path, [VACE_JOB | {"model_type": "tiny_vace_finetune"}], {"guide.mp4": guide}
    )
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "tiny_vace_finetune"
    assert metadata["model_filename"] == "tiny_vace_backbone.safetensors"
    assert metadata["video_guide"] == "guide.mp4"
    # The tiny VACE's folder, rendered here from the same control video.
    (tmp_path / "guide.mp4").write_bytes(guide)
    (tmp_path / "job.json").write_text(json.dumps(VACE_JOB | {"model_type": "wan-vace-tiny"}))
    here = tmp_path / "here"
    assert (
        main(["render", str(tmp_path / "job.json"), "--out", str(here), "--cache", str(tmp_path / "c")]) == 0
    )
    [local] = here.glob("*.mp4")
    assert np.array_equal(read_mp4(video).frames, read_mp4(local).frames)


def test_a_long_video_has_wangps_rife_interpolated_frames_and_rate(
    client: FarmClient, tmp_path: Path
) -> None:
    """RIFE through the farm: a long video's windows rendered as separate attempts (kept in object
    storage between them) and interpolated window by window at the end (WanGP 8681e9f7)."""
    [agent] = client.agents()
    assert "rife" in agent.plugins
    # 17 frames in windows of 9: 9, then 8 new ones, x2 from the last frame before them. Two windows
    # at x2 prove the carried frame; the CPU's RIFE costs most of this test, so not 25 frames at x4
    # (test_rife_render checks rife4's count and three windows in one process).
    settings = {"video_length": 17, "sliding_window_size": 9, "temporal_upsampling": "rife2"}
    [job] = client.submit([tiny("wan-ti2v-tiny", **settings)]).jobs
    done = wait_job(client, job.id, timeout_s=300)
    assert done.state == "succeeded", done
    [output] = done.outputs
    video = client.download(output.url, tmp_path / output.name)
    decoded = read_mp4(video)
    assert decoded.frame_count == (17 - 1) * 2 + 1 and float(decoded.fps) == 24 * 2
    metadata = read_metadata(video)
    assert metadata is not None and metadata["temporal_upsampling"] == "rife2"
    assert metadata["wanfarm"]["postprocessors"] == ["rife"]
