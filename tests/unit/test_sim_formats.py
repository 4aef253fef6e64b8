"""The simulator's pool and trace files: the documented examples load, bad files name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from models.gpus import GIB
from models.work import WorkSize
from scheduler.sim.formats import SimInputError, TraceJob, load_pool, write_trace
from scheduler.sim.traces import load_trace

REFERENCE = Path(__file__).resolve().parents[2] / "scheduler" / "sim" / "reference"
# The issue's examples, with a real catalogue id for "<model id>".
POOL_EXAMPLE = (
    '{"nodes": [{"name": "lab", "count": 2, "gpus": ["RTX 3060", "RTX 4090"], "ram_gb": 64, '
    '"disk_gb": 1000, "disk_gbps": 3.0, "net_gbps": 1.0, "cached": ["wan2.1-t2v-1.3b"]}]}'
)
TRACE_EXAMPLE = (
    '{"t": 12.5, "model": "wan2.1-t2v-1.3b", "resolution": "832x480", "frames": 81, "steps": 30, '
    '"priority": 50, "owner": "alice"}'
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_documented_pool_example_loads_with_its_units(tmp_path: Path) -> None:
    pool = load_pool(write(tmp_path, "lab.pool.json", POOL_EXAMPLE))
    [node] = pool.nodes
    assert (node.name, node.count, node.gpus) == ("lab", 2, ("RTX 3060", "RTX 4090"))
    assert pool.gpu_count == 4
    assert node.ram_bytes == 64 * GIB
    assert node.disk_bytes_per_s == 3e9  # disk_gbps is GB/s
    assert node.net_bytes_per_s == 125e6  # net_gbps is Gbit/s
    assert node.cached == frozenset({"wan2.1-t2v-1.3b"})


def test_the_documented_trace_example_loads(tmp_path: Path) -> None:
    [job] = load_trace(write(tmp_path, "t.jsonl", TRACE_EXAMPLE + "\n"))
    assert job == TraceJob("job-1", 12.5, WorkSize("wan2.1-t2v-1.3b", 832, 480, 81, 30), 50, "alice")


def test_a_written_trace_reads_back_the_same(tmp_path: Path) -> None:
    jobs = [
        TraceJob("a", 0.0, WorkSize("flux.1-dev", 1024, 1024, 1, 28), 80, "bob"),
        TraceJob("b", 3.5, WorkSize("wan2.1-t2v-14b", 832, 480, 81, 30, batch=2), 50, "ann"),
    ]
    path = tmp_path / "t.jsonl"
    assert write_trace(jobs, path) == 2
    assert list(load_trace(path)) == jobs


def test_the_reference_scenarios_load() -> None:
    assert load_pool(REFERENCE / "home-lab.pool.json").gpu_count == 6
    assert load_pool(REFERENCE / "community.pool.json").gpu_count == 60
    assert load_pool(REFERENCE / "large-farm.pool.json").gpu_count == 2000
    assert 200 <= sum(1 for _ in load_trace(REFERENCE / "home-lab.trace.jsonl")) <= 600
    assert 200 <= sum(1 for _ in load_trace(REFERENCE / "community.trace.jsonl")) <= 600


def test_a_generator_spec_expands_deterministically() -> None:
    first = load_trace(REFERENCE / "large-farm.trace.json")
    second = load_trace(REFERENCE / "large-farm.trace.json")
    head = [next(first) for _ in range(200)]
    assert head == [next(second) for _ in range(200)]
    assert len({job.work.model_id for job in head}) > 3 and len({job.owner for job in head}) > 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (POOL_EXAMPLE.replace("RTX 4090", "RTX 9999"), "nodes[0].gpus: unknown GPU 'RTX 9999'"),
        (POOL_EXAMPLE.replace('["wan2.1-t2v-1.3b"]', '["wan9"]'), "nodes[0].cached: unknown model 'wan9'"),
        (POOL_EXAMPLE.replace('"ram_gb": 64', '"ram_gb": -1'), "'ram_gb' must be a number >= 0"),
        (POOL_EXAMPLE.replace('"count"', '"cuont"'), "unknown key 'cuont'"),
        ('{"nodes": [', "lab.pool.json:1: malformed JSON"),
    ],
)
def test_a_bad_pool_is_refused_naming_the_rule(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SimInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pool(write(tmp_path, "lab.pool.json", text))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([TRACE_EXAMPLE, "{not json"], "t.jsonl:2: malformed JSON line"),
        ([TRACE_EXAMPLE.replace("wan2.1-t2v-1.3b", "wan9")], "t.jsonl:1: unknown model 'wan9'"),
        ([TRACE_EXAMPLE, TRACE_EXAMPLE.replace("12.5", "3")], "t.jsonl:2: t=3.0 is earlier"),
        ([TRACE_EXAMPLE.replace('"832x480"', '"big"')], "t.jsonl:1: resolution 'big' is not"),
        ([TRACE_EXAMPLE.replace('"t": 12.5, ', "")], "t.jsonl:1: missing 't'"),
    ],
)
def test_a_bad_trace_is_refused_naming_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(SimInputError, match=message):
        list(load_trace(path))


@pytest.mark.parametrize(
    ("pool_text", "trace_text", "options", "named"),
    [
        (POOL_EXAMPLE.replace("RTX 3060", "GTX 9000"), TRACE_EXAMPLE + "\n", [], "unknown GPU 'GTX 9000'"),
        (POOL_EXAMPLE, f"{TRACE_EXAMPLE}\n{TRACE_EXAMPLE}\n{{oops\n", [], "t.jsonl:3: malformed JSON line"),
        (POOL_EXAMPLE, TRACE_EXAMPLE + "\n", ["--policy", "greedy,nope"], "unknown placement policy 'nope'"),
    ],
    ids=["unknown-gpu", "malformed-line", "unknown-policy"],
)
def test_the_command_exits_2_naming_what_is_wrong(
    pool_text: str,
    trace_text: str,
    options: list[str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pool = write(tmp_path, "p.json", pool_text)
    trace = write(tmp_path, "t.jsonl", trace_text)
    assert main(["simulate", "--pool", str(pool), "--trace", str(trace), *options]) == 2
    assert named in capsys.readouterr().err


def test_a_generator_spec_with_an_unknown_model_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "p.pool.json", POOL_EXAMPLE)
    spec = {"generate": {"pool": "p.pool.json", "hours": 1, "models": ["wan9"]}}
    path = write(tmp_path, "t.json", json.dumps(spec))
    with pytest.raises(SimInputError, match="unknown model 'wan9'"):
        list(load_trace(path))
