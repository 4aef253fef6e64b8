"""A VACE definition made of a text-to-video file and WanGP's VACE module (as vace_14B_fusionix is,
Wan2GP 8681e9f7) rendered by the farm: the agent fetches both files by their URLs, merges the
module's blocks into the transformer and renders the queue.zip's control video into the video the
tiny VACE's own folder renders on this machine."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.cli.client import FarmClient
from controller.farm import Farm
from models.catalogue import MODELS_ENV, catalogue
from models.catalogue import definitions as catalogue_definitions
from models.tiny_vace import write_vace_files
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, wait_job
from tests.unit.loopback_http import Asked, Reply, scripted_server
from tests.unit.test_vace import grey, write_video

JOB = {"prompt": "a fox", "seed": 5, "video_length": 9, "video_prompt_type": "V", "video_guide": "guide.mp4"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vace-modules-farm")
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
    env = pytest.MonkeyPatch()
    env.setenv(MODELS_ENV, str(models))
    with scripted_server(script) as base_url:
        # WanGP's way: the module's own definition, and one naming it by model type over a t2v file.
        module = {
            "architecture": "wan-vace-tiny",
            "modules": [[f"{base_url}/files/tiny_vace_module.safetensors"]],
        }
        finetune = {"architecture": "wan-vace-tiny", "modules": ["tiny_vace_module"]}
        finetune["URLs"] = [f"{base_url}/files/tiny_vace_backbone.safetensors"]
        for name, model in (("tiny_vace_module", module), ("tiny_vace_finetune", finetune)):
            (models / f"{name}.json").write_text(json.dumps({"model": model}))
        catalogue.cache_clear()
        catalogue_definitions.cache_clear()
        with (
            ray_cluster([NodeSpec(("RTX 4090",))]) as cluster,
            running_farm(folder / "data", cluster.address, agents=1) as farm,
        ):
            yield farm
    env.undo()
    catalogue.cache_clear()
    catalogue_definitions.cache_clear()


def test_the_farm_renders_a_t2v_file_with_the_vace_module_as_the_vace_folder(
    farm: Farm, folder: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        params = JOB | {"model_type": "tiny_vace_finetune"}
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": params}]))
        zipped.write(folder / "guide.mp4", "guide.mp4")
    client = FarmClient(farm.url)
    try:
        [job] = client.submit_queue(archive).jobs
        done = wait_job(client, job.id)
        assert done.state == "succeeded", done.error
        [output] = done.outputs
        video = client.download(output.url, tmp_path / output.name)
    finally:
        client.close()
    metadata = read_metadata(video)
    assert metadata is not None and metadata["model_type"] == "tiny_vace_finetune"
    assert metadata["model_filename"] == "tiny_vace_backbone.safetensors"
    assert metadata["video_guide"] == "guide.mp4"
    # The tiny VACE's folder, rendered here from the same control video.
    (tmp_path / "guide.mp4").write_bytes((folder / "guide.mp4").read_bytes())
    (tmp_path / "job.json").write_text(json.dumps(JOB | {"model_type": "wan-vace-tiny"}))
    here = tmp_path / "here"
    assert (
        main(["render", str(tmp_path / "job.json"), "--out", str(here), "--cache", str(tmp_path / "c")]) == 0
    )
    [local] = here.glob("*.mp4")
    assert np.array_equal(read_mp4(video).frames, read_mp4(local).frames)
