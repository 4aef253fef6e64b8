"""RIFE through the farm: a long video's windows rendered as separate attempts (kept in object
storage between them) and interpolated window by window at the end, with the tiny RIFE (random
weights in the released file's layout). WanGP read at deepbeepmeep/Wan2GP@8681e9f7."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.client import FarmClient
from processing import rife
from processing.metadata import read_metadata
from processing.video import read_mp4
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job


def test_a_long_video_from_the_farm_has_wangps_interpolated_frames_and_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set before the cluster starts: its agents inherit it.
    monkeypatch.setenv(rife.WEIGHTS_ENV, str(rife.save_tiny_weights(tmp_path / "rife-tiny.pkl")))
    with (
        ray_cluster([NodeSpec(("RTX 4090",), ram_gb=64)]) as cluster,
        running_farm(tmp_path / "farm", cluster.address, agents=1) as farm,
    ):
        client = FarmClient(farm.url)
        try:
            [agent] = client.agents()
            assert "rife" in agent.plugins
            # 25 frames in windows of 9: 9, then 8 and 8 new ones; x4 from the last frame before each.
            settings = {"video_length": 25, "sliding_window_size": 9, "temporal_upsampling": "rife4"}
            [job] = client.submit([tiny("wan-ti2v-tiny", **settings)]).jobs
            done = wait_job(client, job.id, timeout_s=300)
            assert done.state == "succeeded", done
            [output] = done.outputs
            video = client.download(output.url, tmp_path / output.name)
        finally:
            client.close()
    decoded = read_mp4(video)
    assert decoded.frame_count == (25 - 1) * 4 + 1 and float(decoded.fps) == 24 * 4
    metadata = read_metadata(video)
    assert metadata is not None and metadata["temporal_upsampling"] == "rife4"
    assert metadata["wanfarm"]["postprocessors"] == ["rife"]
