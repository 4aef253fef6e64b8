"""The tiny Qwen-Image-Edit through the farm: a queue.zip carrying the job's input image (its
image_refs) is submitted, the image travels as an upload the agent fetches, and the output is the
edit, at the image's aspect ratio, with the image named in its metadata."""

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
from processing.image import read_png
from processing.metadata import read_metadata
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, wait_job


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    folder = tmp_path_factory.mktemp("qwen-edit-farm")
    with (
        ray_cluster([NodeSpec(("RTX 4090",))]) as cluster,
        running_farm(folder, cluster.address, agents=1) as farm,
    ):
        yield farm


def test_an_edit_job_renders_from_the_image_its_queue_zip_carries(farm: Farm, tmp_path: Path) -> None:
    image = io.BytesIO()
    Image.new("RGB", (128, 64), (200, 30, 30)).save(image, format="PNG")
    entry = {
        "model_type": "qwen-image-edit-tiny",
        "prompt": "add a hat",
        "resolution": "64x64",
        "num_inference_steps": 2,
        "seed": 5,
        "image_refs": ["subject.png"],
    }
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": entry}]))
        zipped.writestr("subject.png", image.getvalue())
    client = FarmClient(farm.url)
    try:
        [job] = client.submit_queue(archive).jobs
        done = wait_job(client, job.id)
        assert done.state == "succeeded", done
        [output] = done.outputs
        path = client.download(output.url, tmp_path / output.name)
    finally:
        client.close()
    # The 2:1 image on a 64x64 canvas: 96x32 (sides rounded to the tiny model's block of 32).
    assert read_png(path).shape == (32, 96, 3)
    metadata = read_metadata(path)
    assert metadata is not None and metadata["model_type"] == "qwen-image-edit-tiny"
    assert metadata["image_refs"] == ["subject.png"]
