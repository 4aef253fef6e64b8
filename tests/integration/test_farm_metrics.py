"""/metrics on a real two-node farm: job outcomes, per-agent series, cache misses then hits; and a
real Prometheus server scraping it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.cli.client import FarmClient
from controller.eta_honesty import eta_error
from controller.farm import Farm
from controller.schemas import JobOut
from models.gpus import find_gpu
from tests.integration.farm_helpers import NodeSpec, ray_cluster, running_farm, tiny, wait_job, wait_until

GIB = 1024**3
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Run:
    farm: Farm
    after_first: Samples  # /metrics after the first job, a cold cache
    after_all: Samples


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    nodes = [NodeSpec(("RTX 4090",), ram_gb=64), NodeSpec(("RTX 3060",), ram_gb=32)]
    with (
        ray_cluster(nodes) as cluster,
        running_farm(tmp_path_factory.mktemp("farm"), cluster.address, agents=2) as farm,
        closing(FarmClient(farm.url)) as client,
    ):
        states = []
        after_first: Samples = {}
        for index, settings in enumerate([tiny("wan-tiny"), tiny("flux-tiny"), tiny("wan-tiny")]):
            [job] = client.submit([settings]).jobs
            states.append(wait_job(client, job.id).state)
            if index == 0:
                after_first = scrape(farm.url)
        assert states == ["succeeded"] * 3
        yield Run(farm, after_first, scrape(farm.url))


def test_metrics_count_the_succeeded_jobs(run: Run) -> None:
    assert value(run.after_all, "wanfarm_jobs_finished_total", outcome="succeeded") == 3
    assert value(run.after_all, "wanfarm_jobs_finished_total", outcome="failed") == 0
    assert total(run.after_all, "wanfarm_jobs_submitted_total") == 3
    assert value(run.after_all, "wanfarm_jobs", state="succeeded") == 3
    assert total(run.after_all, "wanfarm_job_render_seconds_count") == 3
    assert total(run.after_all, "wanfarm_job_queue_seconds_count") == 3
    assert total(run.after_all, "wanfarm_scheduler_decisions_total", kind="assignment") == 3


def test_every_declared_agent_has_its_series(run: Run) -> None:
    for gpu in ("RTX 4090", "RTX 3060"):
        spec = find_gpu(gpu)
        assert value(run.after_all, "wanfarm_agent_up", gpu_model=gpu, arch=spec.arch, gpu_index="0") == 1
        assert value(run.after_all, "wanfarm_agent_vram_total_bytes", gpu_model=gpu) == spec.vram_bytes
        assert value(run.after_all, "wanfarm_agent_busy", gpu_model=gpu) == 0
    hot = [dict(labels) for name, labels in run.after_all if name == "wanfarm_agent_hot_model"]
    assert {labels["model"] for labels in hot} <= {"wan-tiny", "flux-tiny"} and hot


def test_the_weight_cache_misses_first_then_hits(run: Run) -> None:
    assert total(run.after_first, "wanfarm_weight_cache_misses_total") == 1
    assert total(run.after_first, "wanfarm_weight_cache_hits_total") == 0
    assert total(run.after_first, "wanfarm_weight_downloaded_bytes_total") > 0
    # flux-tiny is new too; the second wan-tiny finds its weights hot (or on its node's disk).
    assert total(run.after_all, "wanfarm_weight_cache_misses_total") == 2
    assert total(run.after_all, "wanfarm_weight_cache_hits_total") == 1
    assert total(run.after_all, "wanfarm_weight_cache_bytes") > 0


def test_a_real_prometheus_scrapes_the_farm(run: Run, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "the prometheus binary is missing: apt-get install -y prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI installs it in .ci/run)")
        pytest.skip(message)
    target = urllib.parse.urlparse(run.farm.url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "wanfarm", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"
        finished = 'wanfarm_jobs_finished_total{outcome="succeeded"}'
        wait_until(lambda: query(api, finished) == [3.0], 60, "Prometheus to scrape 3 succeeded jobs")
        vram = 'wanfarm_agent_vram_total_bytes{gpu_model="RTX 4090"}'
        assert query(api, vram) == [24.0 * GIB]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    [found] = [v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()]
    return found


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def query(api: str, promql: str) -> list[float]:
    """The values of an instant query; [] while Prometheus has no such series (or is starting)."""
    try:
        body = httpx.get(api, params={"query": promql}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return []
    return [float(series["value"][1]) for series in body.get("data", {}).get("result", [])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_each_job_gets_an_eta_at_submit_and_metrics_count_its_error(run: Run) -> None:
    # Last in the module: the targets above count the fixture's three jobs. How honest these ETAs
    # are is a timing figure, measured by tests/benchmarks/bench_eta.py (another test's load on a
    # shared machine moves every render here); this checks what the user sees of them.
    samples = scrape(run.farm.url)
    before = _eta_errors(samples)
    with closing(FarmClient(run.farm.url)) as client:
        [warm_up] = client.submit([tiny("wan-tiny", seed=99)]).jobs
        warm_up = wait_job(client, warm_up.id)
        assert warm_up.state == "succeeded"
        submitted = client.submit([tiny("wan-tiny", seed=seed) for seed in range(5)]).jobs
        assert all(job.submit_eta is None for job in submitted)  # answered before any placement round
        wait_until(
            lambda: all(client.job(job.id).submit_eta for job in submitted), 30, "the first round's ETAs"
        )
        given = [client.job(job.id).submit_eta or 0.0 for job in submitted]
        done = [wait_job(client, job.id) for job in submitted]
    assert [job.state for job in done] == ["succeeded"] * 5
    assert [job.submit_eta for job in done] == given  # kept as given, while `eta` moves
    # Alike jobs queued in order end in order, each after it was submitted.
    assert all(job.created_at < (job.submit_eta or 0.0) for job in done)
    assert given == sorted(given)
    count, errors = _eta_errors(scrape(run.farm.url))
    # The warm-up and the five, as a model already finished here, each with the error shown here.
    assert count - before[0] == 6, (before, count)
    assert errors - before[1] == pytest.approx(sum(_eta_error(job) for job in [warm_up, *done]))


def _eta_errors(samples: Samples) -> tuple[float, float]:
    """How many errors of a seen model's ETA /metrics counted, and their sum."""
    return (
        total(samples, "wanfarm_eta_error_ratio_count", model_seen="true"),
        total(samples, "wanfarm_eta_error_ratio_sum", model_seen="true"),
    )


def _eta_error(job: JobOut) -> float:
    assert job.submit_eta is not None and job.finished_at is not None
    return eta_error(job.submit_eta, job.created_at, job.finished_at)
