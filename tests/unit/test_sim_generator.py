"""Synthetic traces: calibrated to the offered load, deterministic, with the mix asked for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from scheduler.sim.formats import load_pool
from scheduler.sim.generator import generate_trace, main

REFERENCE = Path(__file__).resolve().parents[2] / "scheduler" / "sim" / "reference"
POOL = load_pool(REFERENCE / "community.pool.json")
MODELS = ["wan2.1-t2v-1.3b", "flux.1-schnell", "wan2.1-t2v-14b"]


def test_the_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    first = generate_trace(POOL, MODELS, hours=1, seed=5)
    assert generate_trace(POOL, MODELS, hours=1, seed=5) == first
    assert generate_trace(POOL, MODELS, hours=1, seed=6) != first


def test_half_the_load_is_about_half_the_jobs() -> None:
    full = len(generate_trace(POOL, MODELS, hours=4, load=0.8, seed=1))
    half = len(generate_trace(POOL, MODELS, hours=4, load=0.4, seed=1))
    assert 0.4 < half / full < 0.6


def test_models_follow_their_zipf_rank_and_times_stay_in_order() -> None:
    jobs = generate_trace(POOL, MODELS, hours=6, arrival="bursty", seed=2)
    counts = Counter(job.work.model_id for job in jobs)
    assert counts[MODELS[0]] > counts[MODELS[1]] > counts[MODELS[2]] > 0
    times = [job.t for job in jobs]
    assert times == sorted(times) and times[-1] < 6 * 3600
    assert len({job.owner for job in jobs}) > 1


def test_the_module_writes_a_trace_file(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    args = ["--pool", str(REFERENCE / "home-lab.pool.json"), "--hours", "2", "--seed", "1", "--out", str(out)]
    assert main(args) == 0
    assert out.read_text().count("\n") > 5
