"""Dashboard time to interactive with 10,000 jobs in the store: a farm with one declared agent
over a store holding 9,800 queued jobs (none of which the pool can run, so they stay queued and
the dispatcher keeps computing why they wait) and 200 finished ones; headless Chromium loads `/`
and we time until the queue, the finished list and the agents panel have rendered.
Target: under 2 s. Also reports how long the page's steady 1 s polls take.

Run: `python -m tests.benchmarks.bench_dashboard` (needs /usr/bin/chromium). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from controller.farm import Farm, FarmConfig
from controller.jobs import JobState
from controller.store import JobStore
from models.profiles import Profile
from models.work import WorkSize
from tests.integration.farm_helpers import wait_until
from tests.integration.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.job_records import new_job

QUEUED, FINISHED = 9_800, 200
TARGET_S = 2.0


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-dash-") as scratch:
        data = Path(scratch)
        _fill(data / "jobs.db")
        farm = Farm(FarmConfig(data_dir=data, port=0, declared_gpus=("RTX 3060",))).start()
        try:
            wait_until(lambda: len(farm.agent_listing()) >= 1, 120, "the agent")
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                started = time.perf_counter()
                page.goto(farm.url + "/")
                for ready in ("#active-rows tr", "#finished-rows tr", "#agents .card"):
                    page.locator(ready).first.wait_for(timeout=30_000)
                interactive_s = time.perf_counter() - started
                page.wait_for_timeout(5_000)
                polls = page.evaluate(
                    "performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/v1/jobs')).map(e => e.duration)"
                )
                browser.close()
        finally:
            farm.stop(kill_agents=True)
    polls.sort()
    result = {
        "jobs": QUEUED + FINISHED,
        "interactive_s": round(interactive_s, 3),
        "poll_requests": len(polls),
        "poll_p50_ms": round(polls[len(polls) // 2], 1),
        "poll_max_ms": round(polls[-1], 1),
    }
    ok = interactive_s < TARGET_S
    print(json.dumps(result | {"target_s": TARGET_S, "ok": ok}))
    return 0 if ok else 1


def _fill(path: Path) -> None:
    """The jobs straight into the store, before the farm opens it."""
    now = time.time()
    # Wan 2.2 A14B, 720p, 193 frames, batch 8: ~163 GiB of VRAM, so no agent can take it.
    settings = {"model_type": "t2v_2_2", "prompt": "a storm at sea", "seed": 1}
    big = new_job("local", settings=settings, work=WorkSize("wan2.2-t2v-a14b", 1280, 720, 193, 30, batch=8))
    with JobStore(path) as store:
        done = store.add_jobs([big] * FINISHED, now - 3000)
        for index, job in enumerate(done):
            store.start_attempt(job.id, "gone", Profile.P3, None, now - 2900 + index)
            state = JobState.SUCCEEDED if index % 10 else JobState.FAILED
            store.finish(job.id, 1, state, None if index % 10 else "boom", now - 2800 + index * 10)
        store.add_jobs([big] * QUEUED, now - 60)


if __name__ == "__main__":
    sys.exit(main())
