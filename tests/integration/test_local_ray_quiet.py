"""A farm that starts its own local Ray cluster keeps Ray's token authentication on and does not
print Ray's notice about that default on every start; a mode the user chose is kept."""

from __future__ import annotations

import os
import subprocess
import sys

# Starts a local cluster as `wanfarm up` does, then says which mode the driver runs under.
PROBE = (
    "import os, ray; from controller.ray_cluster import Cluster; Cluster(None, ('RTX 4090',)); "
    "print(os.environ.get('RAY_AUTH_MODE'), flush=True); ray.shutdown()"
)


def _start_local_cluster(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"} | env
    return subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, timeout=180
    )


def test_a_local_cluster_runs_with_token_authentication_and_no_notice_of_it() -> None:
    done = _start_local_cluster()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["token"]
    assert "Token authentication" not in done.stderr


def test_an_authentication_mode_the_user_set_is_kept() -> None:
    done = _start_local_cluster(RAY_AUTH_MODE="disabled")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["disabled"]
