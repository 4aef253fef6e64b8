"""Farm overhead: 20 tiny jobs through REST on an embedded one-agent farm, against `wanfarm render`
of the same 20 jobs in one process, measured in the same run. Target: ratio at most 1.3.

Where the farm's extra time goes, in `breakdown` (seconds, farm minus in-process where both have it):
- `generate`: denoising and decoding, the agent's against the process's;
- `load`: loading weights (once on each side);
- `other`: the rest of each side's time (encoding, writing, the command's own work; on the farm,
  uploads, the HTTP submit, dispatch and polling), split on the farm into
  `first_start` (submit to the first job's start), `handovers` (each next job's start after its
  agent said the last one left the GPU: polling, the inventory read, placement), and `tail`
  (the last job's encode, upload and events, then the client seeing it end).

Run: `make bench` (or `python -m tests.benchmarks.bench_farm_overhead`). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.cli.client import FarmClient
from controller.farm import Farm, FarmConfig
from controller.jobs import JobRecord
from controller.store import JobStore
from models.progress import Phase
from tests.integration.farm_helpers import tiny, wait_job, wait_until

JOBS = 20
TARGET = 1.3


def main() -> int:
    settings = [tiny("wan-tiny", seed=i) for i in range(JOBS)]
    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-") as scratch:
        work = Path(scratch)
        local, local_parts = _render_locally(settings, work)
        farm_s, farm_parts = _through_the_farm(settings, work)
    ratio = farm_s / local
    breakdown = {
        "generate": farm_parts["generate"] - local_parts["generate"],
        "load": farm_parts["load"] - local_parts["load"],
        "other": (farm_s - farm_parts["generate"] - farm_parts["load"])
        - (local - local_parts["generate"] - local_parts["load"]),
        **{key: farm_parts[key] for key in ("first_start", "handovers", "tail")},
    }
    print(json.dumps({"jobs": JOBS, "render_s": round(local, 2), "farm_s": round(farm_s, 2),
                      "ratio": round(ratio, 2), "target": TARGET, "ok": ratio <= TARGET,
                      "breakdown": {key: round(value, 2) for key, value in breakdown.items()}}))  # fmt: skip
    return 0 if ratio <= TARGET else 1


def _render_locally(settings: list[dict[str, object]], work: Path) -> tuple[float, dict[str, float]]:
    # The farm's agent imported torch and diffusers before its clock started: so does this side.
    import diffusers

    import controller.cli.render  # noqa: F401
    import models.runner  # noqa: F401
    from controller.cli import main as cli

    _ = diffusers.WanPipeline

    batch = work / "batch.json"
    batch.write_text(json.dumps(settings))
    with _generations() as parts:
        started = time.monotonic()
        code = cli(["render", str(batch), "--out", str(work / "local"), "--cache", str(work / "cache-local")])
        elapsed = time.monotonic() - started
    assert code == 0, "wanfarm render failed"
    return elapsed, parts


@contextmanager
def _generations() -> Iterator[dict[str, float]]:
    """Sum the generate and load seconds of every generation run in this process meanwhile."""
    from models.runner import PipelineHost

    parts = {"generate": 0.0, "load": 0.0}
    real = PipelineHost.generate

    def generate(self: PipelineHost, *args: Any, **kwargs: Any) -> Any:
        output = real(self, *args, **kwargs)
        parts["generate"] += output.info.generate_seconds
        parts["load"] += output.info.load_seconds
        return output

    PipelineHost.generate = generate  # type: ignore[method-assign]
    try:
        yield parts
    finally:
        PipelineHost.generate = real  # type: ignore[method-assign]


def _through_the_farm(settings: list[dict[str, object]], work: Path) -> tuple[float, dict[str, float]]:
    farm = Farm(FarmConfig(data_dir=work / "farm", port=0, declared_gpus=("RTX 4090",))).start()
    try:
        wait_until(lambda: len(farm.agent_listing()) == 1, 120, "the agent")
        client = FarmClient(farm.url)
        started, wall = time.monotonic(), time.time()
        jobs = client.submit(settings).jobs
        finished = [wait_job(client, job.id, timeout_s=300) for job in jobs]
        elapsed = time.monotonic() - started
        assert all(job.state == "succeeded" for job in finished), [job.error for job in finished]
        return elapsed, _farm_parts(farm, [job.id for job in jobs], wall, wall + elapsed)
    finally:
        farm.stop(kill_agents=True)


def _farm_parts(farm: Farm, job_ids: list[str], submitted: float, seen_done: float) -> dict[str, float]:
    """The agent's generate and load seconds (from the farm's metrics) and the farm's timeline."""
    sums = {
        sample.name: sample.value
        for family in farm.metrics.registry.collect()
        for sample in family.samples
        if sample.name in ("wanfarm_job_render_seconds_sum", "wanfarm_model_load_seconds_sum")
    }
    records = [record for record in (farm.store.get(job_id) for job_id in job_ids) if record is not None]
    records.sort(key=lambda job: job.started_at or 0.0)
    left_gpu = [_left_gpu_at(farm.store, job) for job in records]
    handovers = sum(
        (job.started_at or 0.0) - previous for job, previous in zip(records[1:], left_gpu[:-1], strict=True)
    )
    return {
        "generate": sums.get("wanfarm_job_render_seconds_sum", 0.0),
        "load": sums.get("wanfarm_model_load_seconds_sum", 0.0),
        "first_start": (records[0].started_at or submitted) - submitted,
        "handovers": handovers,
        "tail": seen_done - left_gpu[-1],
    }


def _left_gpu_at(store: JobStore, job: JobRecord) -> float:
    """When the controller read that the job left the GPU (its finish if it never read so)."""
    for event in store.events(job.id):
        if event.kind == "progress" and event.data.get("phase") in (Phase.ENCODING.value, Phase.DONE.value):
            return event.at
    return job.finished_at or 0.0


if __name__ == "__main__":
    sys.exit(main())
