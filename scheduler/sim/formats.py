"""The simulator's input files: a pool (JSON) and a trace of jobs (JSON lines).

Units, as docs/simulator.md documents them: `ram_gb` and `disk_gb` are GiB; `disk_gbps` is gigabytes
per second (a disk is rated in GB/s); `net_gbps` is gigabits per second (a link is rated in
Gbit/s). Every error is a SimInputError naming the file, the line or node, and the rule broken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.catalogue import UnknownModel, get_model
from models.gpus import GIB, UnknownGpu, find_gpu
from models.work import WorkSize

_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")
_NODE_KEYS = {"name", "count", "gpus", "ram_gb", "disk_gb", "disk_gbps", "net_gbps", "cached"}
_JOB_KEYS = {"t", "model", "resolution", "frames", "steps", "priority", "owner", "batch", "id"}


class SimInputError(ValueError):
    """A pool or trace file that breaks a rule; the message names file, place and rule."""


@dataclass(frozen=True)
class NodeSpec:
    """`count` identical nodes, each with one agent per entry of `gpus`."""

    name: str
    count: int
    gpus: tuple[str, ...]  # GPU-table names, as find_gpu spells them
    ram_bytes: int
    disk_bytes: int
    disk_bytes_per_s: float
    net_bytes_per_s: float
    cached: frozenset[str]  # catalogue ids on every such node's disk at the start


@dataclass(frozen=True)
class PoolSpec:
    name: str
    nodes: tuple[NodeSpec, ...]

    @property
    def gpu_count(self) -> int:
        return sum(node.count * len(node.gpus) for node in self.nodes)


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One submission: when, what work (its model a catalogue id), and who asked."""

    job_id: str
    t: float  # seconds from the start of the trace
    work: WorkSize
    priority: int
    owner: str

    def to_json(self) -> dict[str, Any]:
        work = self.work
        row: dict[str, Any] = {
            "id": self.job_id,
            "t": round(self.t, 3),
            "model": work.model_id,
            "resolution": f"{work.width}x{work.height}",
            "frames": work.frames,
            "steps": work.steps,
            "priority": self.priority,
            "owner": self.owner,
        }
        if work.batch != 1:
            row["batch"] = work.batch
        return row


def load_pool(path: Path) -> PoolSpec:
    """Read and check a pool file: known GPU names and model ids, positive sizes and speeds."""
    data = read_json(path)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise SimInputError(f"{path}: a pool is an object with a non-empty list 'nodes'")
    specs = tuple(_node(path, i, row) for i, row in enumerate(nodes))
    names = [spec.name for spec in specs]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise SimInputError(f"{path}: node name {duplicate!r} is used twice")
    return PoolSpec(name=path.name.split(".")[0], nodes=specs)


def write_pool(pool: PoolSpec, path: Path) -> None:
    """Write a pool in the file's units; `load_pool` reads back the same nodes (values given in
    at most six significant figures, as node_spec's callers give them, survive the round trip)."""
    rows = [
        {
            "name": node.name,
            "count": node.count,
            "gpus": list(node.gpus),
            "ram_gb": _figure(node.ram_bytes / GIB),
            "disk_gb": _figure(node.disk_bytes / GIB),
            "disk_gbps": _figure(node.disk_bytes_per_s / 1e9),
            "net_gbps": _figure(node.net_bytes_per_s * 8 / 1e9),
            "cached": sorted(node.cached),
        }
        for node in pool.nodes
    ]
    path.write_text(json.dumps({"nodes": rows}, indent=1) + "\n")


def node_spec(
    name: str,
    count: int,
    gpus: tuple[str, ...],
    ram_gb: float,
    disk_gb: float,
    disk_gbps: float,
    net_gbps: float,
    cached: frozenset[str] = frozenset(),
) -> NodeSpec:
    """A node from the pool file's units (GiB, GB/s for disks, Gbit/s for links)."""
    return NodeSpec(
        name=name,
        count=count,
        gpus=gpus,
        ram_bytes=int(ram_gb * GIB),
        disk_bytes=int(disk_gb * GIB),
        disk_bytes_per_s=disk_gbps * 1e9,  # GB/s
        net_bytes_per_s=net_gbps * 1e9 / 8,  # Gbit/s
        cached=cached,
    )


def write_trace(jobs: Iterable[TraceJob], path: Path) -> int:
    """Write jobs as JSON lines; returns how many."""
    count = 0
    with path.open("w") as out:
        for job in jobs:
            out.write(json.dumps(job.to_json()) + "\n")
            count += 1
    return count


def parse_job(where: str, row: object, default_id: str, previous_t: float) -> TraceJob:
    """One trace row checked against the catalogue; `where` names the file and line in errors."""
    if not isinstance(row, dict):
        raise SimInputError(f"{where}: a job is a JSON object")
    unknown = sorted(set(row) - _JOB_KEYS)
    if unknown:
        raise SimInputError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_JOB_KEYS))}")
    t = _number(where, row, "t", None)
    if t < previous_t:
        raise SimInputError(f"{where}: t={t} is earlier than the previous job's t={previous_t}")
    try:
        preset = get_model(_text(where, row, "model", None))
    except UnknownModel as error:
        raise SimInputError(f"{where}: {error}") from None
    resolution = _text(where, row, "resolution", preset.defaults.resolution)
    match = _RESOLUTION.match(resolution)
    if match is None:
        raise SimInputError(f"{where}: resolution {resolution!r} is not WIDTHxHEIGHT")
    default_frames = preset.defaults.video_length if preset.frames else 1
    priority = _integer(where, row, "priority", 50)
    if not 0 <= priority <= 100:
        raise SimInputError(f"{where}: priority {priority} is outside 0-100")
    work = WorkSize(
        model_id=preset.id,
        width=int(match[1]),
        height=int(match[2]),
        frames=_integer(where, row, "frames", default_frames),
        steps=_integer(where, row, "steps", preset.defaults.num_inference_steps),
        batch=_integer(where, row, "batch", 1),
    )
    owner = _text(where, row, "owner", "anonymous")
    return TraceJob(_text(where, row, "id", default_id), t, work, priority, owner)


def read_json(path: Path) -> Any:
    """The file's JSON; a SimInputError names the file and line when it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SimInputError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SimInputError(f"{path}:{error.lineno}: malformed JSON: {error.msg}") from None


def read_jsonl(path: Path) -> Iterator[TraceJob]:
    """The jobs of a JSON-lines trace, one a line, checked row by row as they are read."""
    previous_t = 0.0
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise SimInputError(f"{where}: malformed JSON line: {error.msg}") from None
            job = parse_job(where, row, f"job-{number}", previous_t)
            previous_t = job.t
            yield job


def _node(path: Path, index: int, row: object) -> NodeSpec:
    where = f"{path}: nodes[{index}]"
    if not isinstance(row, dict):
        raise SimInputError(f"{where}: a node is a JSON object")
    unknown = sorted(set(row) - _NODE_KEYS)
    if unknown:
        raise SimInputError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_NODE_KEYS))}")
    gpus = row.get("gpus")
    if not isinstance(gpus, list) or not gpus or not all(isinstance(g, str) for g in gpus):
        raise SimInputError(f"{where}: 'gpus' must be a non-empty list of GPU names")
    try:
        names = tuple(find_gpu(gpu).name for gpu in gpus)
    except UnknownGpu as error:
        raise SimInputError(f"{where}.gpus: {error}") from None
    cached = row.get("cached", [])
    if not isinstance(cached, list) or not all(isinstance(m, str) for m in cached):
        raise SimInputError(f"{where}: 'cached' must be a list of model ids")
    try:
        cached_ids = frozenset(get_model(model).id for model in cached)
    except UnknownModel as error:
        raise SimInputError(f"{where}.cached: {error}") from None
    count = _integer(where, row, "count", 1)
    if count < 1:
        raise SimInputError(f"{where}: count must be at least 1")
    return node_spec(
        name=_text(where, row, "name", f"node{index}"),
        count=count,
        gpus=names,
        ram_gb=_positive(where, row, "ram_gb", 64.0),
        disk_gb=_positive(where, row, "disk_gb", 1000.0),
        disk_gbps=_positive(where, row, "disk_gbps", 2.0),
        net_gbps=_positive(where, row, "net_gbps", 1.0),
        cached=cached_ids,
    )


def _figure(value: float) -> float | int:
    # Six significant figures: a unit conversion's last-bit noise does not reach the file.
    rounded = float(f"{value:.6g}")
    return int(rounded) if rounded.is_integer() else rounded


def _number(where: str, row: dict[str, Any], key: str, default: float | None) -> float:
    value = row.get(key, default)
    if value is None:
        raise SimInputError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SimInputError(f"{where}: {key!r} must be a number >= 0, got {value!r}")
    return float(value)


def _positive(where: str, row: dict[str, Any], key: str, default: float) -> float:
    value = _number(where, row, key, default)
    if value <= 0:
        raise SimInputError(f"{where}: {key!r} must be > 0")
    return value


def _integer(where: str, row: dict[str, Any], key: str, default: int) -> int:
    value = row.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimInputError(f"{where}: {key!r} must be an integer, got {value!r}")
    if key != "priority" and value < 1:
        raise SimInputError(f"{where}: {key!r} must be at least 1")
    return value


def _text(where: str, row: dict[str, Any], key: str, default: str | None) -> str:
    value = row.get(key, default)
    if value is None:
        raise SimInputError(f"{where}: missing {key!r}")
    if not isinstance(value, str) or not value:
        raise SimInputError(f"{where}: {key!r} must be a non-empty string")
    return value
