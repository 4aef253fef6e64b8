"""A farm on S3 over its real protocol (moto's server on loopback): outputs land in the bucket under
the farm's prefix, their presigned URLs serve them, and agents take published weights from the
mirror."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from controller.cli.client import FarmClient
from controller.farm import Farm
from gpu_agent.storage import StorageConfig, open_store, upload_weights
from models.catalogue import get_model
from models.weights import MIRROR_SOURCE, WeightCache
from processing.image import read_png
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job
from tests.unit.test_storage import moto_s3, new_bucket

PREFIX = "farm/"


@dataclass(frozen=True)
class S3Farm:
    farm: Farm
    client: FarmClient
    s3: Any  # a boto3 S3 client on the same endpoint, to read the bucket as it really is
    bucket: str
    endpoint: str
    data_dir: Path

    def objects(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def body(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data


@pytest.fixture(scope="module")
def s3_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Farm]:
    folder = tmp_path_factory.mktemp("s3-farm")
    # The credentials go into os.environ before the cluster starts: its raylets, and so the agents,
    # inherit them.
    with moto_s3() as endpoint:
        bucket = new_bucket(endpoint)
        storage = StorageConfig(
            kind="s3", bucket=bucket, prefix=PREFIX, endpoint_url=endpoint, region="us-east-1"
        )
        # Publish wan-tiny (only) to the weight mirror, from a cache of the test's own.
        built = WeightCache(folder / "publisher").ensure(get_model("wan-tiny"))
        upload_weights(open_store(storage), "wan-tiny", built)
        data_dir = folder / "data"
        with (
            ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64)]) as cluster,
            running_farm(data_dir, cluster.address, agents=1, storage=storage, weight_mirror=True) as farm,
        ):
            client = FarmClient(farm.url)
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            yield S3Farm(farm, client, s3, bucket, endpoint, data_dir)
            client.close()


def test_a_video_output_is_an_object_under_the_prefix_served_by_its_presigned_url(
    s3_farm: S3Farm, tmp_path: Path
) -> None:
    [job] = s3_farm.client.submit([tiny("wan-tiny", seed=4)]).jobs
    done = wait_job(s3_farm.client, job.id)
    assert done.state == "succeeded", done.error
    [output] = done.outputs
    assert output.key == f"jobs/{job.id}/outputs/{output.name}" and output.name.endswith(".mp4")
    assert s3_farm.objects(f"{PREFIX}jobs/{job.id}/") == [PREFIX + output.key]
    assert output.url.startswith(f"{s3_farm.endpoint}/{s3_farm.bucket}/{PREFIX}{output.key}?")
    fetched = httpx.get(output.url, timeout=30)
    assert fetched.status_code == 200
    stored = s3_farm.body(PREFIX + output.key)
    assert fetched.content == stored and len(stored) > 0
    video = tmp_path / output.name
    video.write_bytes(fetched.content)
    decoded = read_mp4(video)
    assert (decoded.frame_count, decoded.width, decoded.height) == (9, 64, 64)


def test_an_agent_takes_published_weights_from_the_mirror_and_builds_the_others(s3_farm: S3Farm) -> None:
    jobs = s3_farm.client.submit([tiny("wan-tiny", seed=8), tiny("flux-tiny", seed=8)]).jobs
    assert [wait_job(s3_farm.client, job.id).state for job in jobs] == ["succeeded", "succeeded"]
    [agent] = s3_farm.client.agents()
    node_cache = WeightCache(s3_farm.data_dir / "weights" / agent.node_id[:12])
    assert node_cache.last_source("wan-tiny") == MIRROR_SOURCE
    # flux-tiny was never published: the agent built it, and the mirror did not gain it.
    assert node_cache.last_source("flux-tiny") == "built offline"
    assert s3_farm.objects(f"{PREFIX}weights/flux-tiny/") == []
    assert {"wan-tiny", "flux-tiny"} <= set(s3_farm.client.agents()[0].cached_models)


def test_a_job_stores_exactly_one_object_per_output(s3_farm: S3Farm) -> None:
    [job] = s3_farm.client.submit([tiny("flux-tiny", seed=21, batch_size=2)]).jobs
    done = wait_job(s3_farm.client, job.id)
    assert done.state == "succeeded", done.error
    keys = [output.key for output in done.outputs]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert s3_farm.objects(f"{PREFIX}jobs/{job.id}/") == sorted(PREFIX + key for key in keys)
    for output in done.outputs:
        image = s3_farm.body(PREFIX + output.key)
        assert httpx.get(output.url, timeout=30).content == image


def test_nothing_is_written_outside_the_farms_prefix(s3_farm: S3Farm) -> None:
    [job] = s3_farm.client.submit([tiny("flux-tiny", seed=5)]).jobs
    assert wait_job(s3_farm.client, job.id).state == "succeeded"
    every = s3_farm.objects("")
    assert every and all(key.startswith(PREFIX) for key in every)


def test_a_png_output_fetched_by_its_url_decodes(s3_farm: S3Farm, tmp_path: Path) -> None:
    [job] = s3_farm.client.submit([tiny("flux-tiny", seed=6, resolution="64x48")]).jobs
    done = wait_job(s3_farm.client, job.id)
    assert done.state == "succeeded", done.error
    [output] = done.outputs
    image = tmp_path / output.name
    image.write_bytes(httpx.get(output.url, timeout=30).content)
    assert read_png(image).shape == (48, 64, 3)
