"""The tiny HunyuanVideo I2V (hunyuan-i2v-tiny, WanGP's hunyuan_i2v network in tiny) through the
farm: a queue.zip carrying the start image is submitted, the image travels as an upload the agent
fetches, and the clip has the image's aspect ratio and names the image in its metadata."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from controller.cli.client import FarmClient
from controller.farm import Farm
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, wait_job


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    folder = tmp_path_factory.mktemp("hunyuan-i2v-farm")
    with (
        ray_cluster([NodeSpec(("RTX 4090",))]) as cluster,
        running_farm(folder, cluster.address, agents=1) as farm,
    ):
        yield farm


def test_an_i2v_job_renders_from_the_start_image_its_queue_zip_carries(farm: Farm, tmp_path: Path) -> None:
    image = io.BytesIO()
    Image.new("RGB", (64, 32), (30, 160, 40)).save(image, format="PNG")
    entry = {
        "model_type": "hunyuan-i2v-tiny",
        "prompt": "a fox turns",
        "resolution": "64x64",
        "video_length": 5,
        "seed": 4,
        "image_prompt_type": "S",
        "image_start": "start.png",
    }
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": entry}]))
        zipped.writestr("start.png", image.getvalue())
    client = FarmClient(farm.url)
    try:
        [job] = client.submit_queue(archive).jobs
        done = wait_job(client, job.id)
        assert done.state == "succeeded", done
        [output] = done.outputs
        path = client.download(output.url, tmp_path / output.name)
    finally:
        client.close()
    # The 2:1 image on a 64x64 canvas, each side a multiple of 16 (WanGP's fit): 96x48.
    decoded = read_mp4(path)
    assert (decoded.frame_count, decoded.width, decoded.height) == (5, 96, 48)
    metadata = read_metadata(path)
    assert metadata is not None and metadata["model_type"] == "hunyuan-i2v-tiny"
    assert metadata["image_start"] == "start.png"
