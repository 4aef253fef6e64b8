"""Farm overhead: 20 tiny jobs through REST on an embedded one-agent farm, against `wanfarm render`
of the same 20 jobs in one process, measured in the same run. Target: ratio at most 1.5.

Run: `make bench` (or `python -m tests.benchmarks.bench_farm_overhead`). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from controller.cli.client import FarmClient
from controller.farm import Farm, FarmConfig
from tests.integration.farm_helpers import tiny, wait_job, wait_until

JOBS = 20
TARGET = 1.5


def main() -> int:
    settings = [tiny("wan-tiny", seed=i) for i in range(JOBS)]
    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-") as scratch:
        work = Path(scratch)
        local = _render_locally(settings, work)
        farm_s = _through_the_farm(settings, work)
    ratio = farm_s / local
    print(json.dumps({"jobs": JOBS, "render_s": round(local, 2), "farm_s": round(farm_s, 2),
                      "ratio": round(ratio, 2), "target": TARGET, "ok": ratio <= TARGET}))  # fmt: skip
    return 0 if ratio <= TARGET else 1


def _render_locally(settings: list[dict[str, object]], work: Path) -> float:
    # The farm's agent imported torch and diffusers before its clock started: so does this side.
    import diffusers

    import controller.cli.render  # noqa: F401
    import models.runner  # noqa: F401
    from controller.cli import main as cli

    _ = diffusers.WanPipeline

    batch = work / "batch.json"
    batch.write_text(json.dumps(settings))
    started = time.monotonic()
    code = cli(["render", str(batch), "--out", str(work / "local"), "--cache", str(work / "cache-local")])
    elapsed = time.monotonic() - started
    assert code == 0, "wanfarm render failed"
    return elapsed


def _through_the_farm(settings: list[dict[str, object]], work: Path) -> float:
    farm = Farm(FarmConfig(data_dir=work / "farm", port=0, declared_gpus=("RTX 4090",))).start()
    try:
        wait_until(lambda: len(farm.agent_listing()) == 1, 120, "the agent")
        client = FarmClient(farm.url)
        started = time.monotonic()
        jobs = client.submit(settings).jobs
        finished = [wait_job(client, job.id, timeout_s=300) for job in jobs]
        elapsed = time.monotonic() - started
        assert all(job.state == "succeeded" for job in finished), [job.error for job in finished]
        return elapsed
    finally:
        farm.stop(kill_agents=True)


if __name__ == "__main__":
    sys.exit(main())
