"""Submit throughput on loopback: one job per request from several client threads against a
`wanfarm up`, until 10,000 jobs are held: `idle` with no agents (every job stays queued), and
`rendering` with two declared-GPU agents rendering the queue's head meanwhile (the dispatcher
reading their events and placing as jobs end, against a queue that grows to 10,000).
Targets: at least 300 accepted jobs/s sustained (idle), p99 latency under 100 ms (both),
controller under 500 MB resident with the 10,000 jobs queued (idle).

Run: `make bench` (or `python -m tests.benchmarks.bench_submit`). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
import psutil

TOTAL = 10_000
THREADS = 8
AGENTS_RENDERING = 2
TARGET_RATE, TARGET_P99_MS, TARGET_RSS_MB = 300, 100, 500


def main() -> int:
    idle = _case(agents=0)
    rendering = _case(agents=AGENTS_RENDERING)
    ok = (
        idle["rate_per_s"] >= TARGET_RATE
        and idle["p99_ms"] < TARGET_P99_MS
        and idle["controller_rss_mb"] < TARGET_RSS_MB
        and rendering["p99_ms"] < TARGET_P99_MS
        and rendering["rendered"] > 0
    )
    print(json.dumps({"idle": idle, "rendering": rendering, "ok": ok}))
    return 0 if ok else 1


def _case(agents: int) -> dict[str, Any]:
    """Submit TOTAL jobs to a farm of `agents` declared GPUs rendering meanwhile."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-") as scratch:
        port = _free_port()
        declared = [arg for _ in range(agents) for arg in ("--declare-gpu", "RTX 4090")]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "up",
                "--port",
                str(port),
                "--data-dir",
                scratch,
                *declared,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"RAY_DEDUP_LOGS": "0"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            assert server.stdout is not None and "WanFarm serving" in server.stdout.readline()
            _wait_for_agents(url, agents)
            latencies, elapsed = _hammer(url)
            rss_mb = _rss_mb(server.pid)
            held = httpx.get(f"{url}/v1/jobs", params={"limit": 1}).json()
            done = httpx.get(f"{url}/v1/jobs", params={"state": "succeeded", "limit": 500}).json()
        finally:
            server.terminate()
            server.wait(timeout=60)
    latencies.sort()
    return {
        "agents": agents,
        "jobs": len(latencies),
        "rate_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "controller_rss_mb": round(rss_mb, 1),
        "newest_job_state": held["jobs"][0]["state"],
        "rendered": len(done["jobs"]),  # succeeded meanwhile (up to 500)
    }


def _wait_for_agents(url: str, count: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while len(httpx.get(f"{url}/v1/agents").json()) < count:
        assert time.monotonic() < deadline, f"{count} agents did not come up in {timeout_s:.0f} s"
        time.sleep(0.5)


def _hammer(url: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = TOTAL // THREADS

    def submit(worker: int) -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(per_thread):
                body = {"model_type": "wan-tiny", "prompt": f"job {worker}-{i}", "video_length": 9, "seed": i}
                started = time.perf_counter()
                response = http.post("/v1/jobs", json=body)
                mine.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


if __name__ == "__main__":
    sys.exit(main())
