"""The tiny Z-Image ControlNet through the farm: a queue.zip carrying the job's control image
(image_guide, with V in video_prompt_type) is submitted, the image travels as an upload the agent
fetches, and the output is steered by it: at the image's aspect ratio, the image and its weight in
its metadata, other pixels than the same job without the control image."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controller.cli.client import FarmClient
from controller.farm import Farm
from processing.image import read_png
from processing.metadata import read_metadata
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, wait_job


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    folder = tmp_path_factory.mktemp("z-image-control-farm")
    with (
        ray_cluster([NodeSpec(("RTX 4090",))]) as cluster,
        running_farm(folder, cluster.address, agents=1) as farm,
    ):
        yield farm


def test_a_control_job_renders_from_the_image_its_queue_zip_carries(farm: Farm, tmp_path: Path) -> None:
    image = io.BytesIO()
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = (230, 200, 40)
    Image.fromarray(pixels).save(image, format="PNG")
    plain = {"model_type": "z-image-control-tiny", "prompt": "a fox", "resolution": "64x64", "seed": 5}
    guided = plain | {"video_prompt_type": "V", "image_guide": "pose.png", "control_net_weight": 0.6}
    # The plain job at the control image's size: only the control differs.
    plain["resolution"] = "96x48"
    archive = tmp_path / "queue.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("queue.json", json.dumps([{"id": 1, "params": guided}, {"id": 2, "params": plain}]))
        zipped.writestr("pose.png", image.getvalue())
    client = FarmClient(farm.url)
    try:
        paths = []
        for n, job in enumerate(client.submit_queue(archive).jobs):
            done = wait_job(client, job.id)
            assert done.state == "succeeded", done
            [output] = done.outputs
            paths.append(client.download(output.url, tmp_path / f"{n}-{output.name}"))
    finally:
        client.close()
    steered, alone = (read_png(path) for path in paths)
    # The 2:1 image on a 64x64 canvas: 96x48 (its aspect at the canvas's pixels, sides rounded to 16).
    assert steered.shape == alone.shape == (48, 96, 3)
    assert not np.array_equal(np.asarray(steered), np.asarray(alone))
    metadata = read_metadata(paths[0])
    assert metadata is not None and metadata["model_type"] == "z-image-control-tiny"
    assert metadata["image_guide"] == "pose.png" and metadata["video_prompt_type"] == "V"
    assert metadata["control_net_weight"] == 0.6
