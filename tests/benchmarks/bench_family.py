"""The policy against the baselines over the scenario family (scheduler.sim.family), seed 0.

Per scenario, the policy's mean and p95 latency and bytes over the best baseline on each among
those that finished the most jobs (fifo, affinity, horde, locality; `--shown greedy` adds greedy
beside them, never as the bar; bytes only over those within 2x of the best mean latency,
bench_scheduler.bytes_bar), the floor's ratios, OOM failures, unfinished jobs, the highest
priority class's p95 ratio, Jain's index over equal owners' GPU time in the overload window, and
the ETA error at submit where reported.
Targets: every scenario mean and p95 <= 1.0 with 0 OOM and every job done; geometric means mean
<= 0.7, p95 <= 0.75, bytes <= 0.6; top class p95 <= 0.5 wherever classes exist; Jain >= 0.95.

    python -m tests.benchmarks.bench_family [--count 40] [--policies wanfarm,...] [--only NAME,...]
        [--baselines-cache FILE] [--json FILE] [--processes 2] [--shown greedy]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import geometric_mean

from scheduler.registry import get_policy
from scheduler.sim.bounds import latency_floor
from scheduler.sim.engine import simulate
from scheduler.sim.family import FAMILY_SEED, FAMILY_SIZE, Scenario, scenario
from scheduler.sim.metrics import PolicyReport, jain_index
from scheduler.sim.targets import NO_DATA, Target, at_least, at_most
from tests.benchmarks.bench_scheduler import BASELINES, Recorder, baseline_bar, best_of, bytes_bar

ROOT = Path(__file__).resolve().parents[2]
SHOWN: tuple[str, ...] = ()  # beside in the table, never the bar; greedy is not shown by default:
# its rounds take 90 s where the others take 2 on a long queue, half an hour of `make bench`
SCENARIO_RATIO = 1.0
MEAN_GEO, P95_GEO, BYTES_GEO = 0.7, 0.75, 0.6
HIGH_RATIO, JAIN_TARGET = 0.5, 0.95
# The code a baseline's figures depend on, besides the scenario: a change to any of it empties
# the cache. The policy under test (scheduler/wanfarm) and the floor are not part of it.
CACHE_CODE = ("models", "scheduler")
CACHE_SKIP = ("scheduler/wanfarm/", "scheduler/sim/bounds.py", "scheduler/sim/family")


@dataclass(frozen=True)
class Row:
    """One scenario's figures for the policy under test (ratios over the best baseline)."""

    scenario: str
    policy: str
    traits: tuple[str, ...]
    gpus: int
    jobs: int
    mean_ratio: float
    p95_ratio: float
    bytes_ratio: float
    floor_mean_ratio: float
    floor_p95_ratio: float
    oom_failures: int
    unfinished: int  # submitted but not completed: failed or left pending
    high_p95_ratio: float | None  # the highest class's p95 over the best baseline's; None: one class
    jain: float | None  # equal owners' GPU time in the overload window; None: no such owners
    eta_submit_error: float | None  # median |first ETA - finish| / latency, jobs of models seen before
    bar: str  # the baselines that set the bar
    best: dict[str, str]  # metric -> the baseline best at it
    cpu_s: float  # the policy's simulation, CPU seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=FAMILY_SIZE)
    parser.add_argument("--first-seed", type=int, default=FAMILY_SEED)
    parser.add_argument("--policies", default="wanfarm", help="comma-separated; the first is judged")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--baselines-cache", type=Path, help="JSON file of the baselines' reports")
    parser.add_argument("--json", type=Path, help="write every row and target here too")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--shown", default=",".join(SHOWN), help="policies shown beside, never the bar")
    args = parser.parse_args(argv)
    policies = tuple(name.strip() for name in args.policies.split(",") if name.strip())
    seeds = list(range(args.first_seed, args.first_seed + args.count))
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        seeds = [seed for seed in seeds if f"family-{seed}" in wanted]
    cache = _load_cache(args.baselines_cache)
    started = time.perf_counter()
    shown = tuple(name.strip() for name in args.shown.split(",") if name.strip())
    jobs = [_Task(seed, policies, shown, cache) for seed in seeds]
    rows: list[Row] = []
    # Each scenario's rows print and its baselines reach the cache as it ends, so an interrupted
    # run keeps what it measured.
    with multiprocessing.get_context("fork").Pool(max(1, args.processes)) as pool:
        for scenario_rows, fresh in pool.imap_unordered(_run_scenario, jobs):
            rows.extend(scenario_rows)
            if fresh:
                cache.update(fresh)
                _save_cache(args.baselines_cache, cache)
    rows.sort(key=lambda row: (row.scenario, policies.index(row.policy)))
    _print_rows(rows)
    judged = [row for row in rows if row.policy == policies[0]]
    targets = family_targets(judged)
    _print_targets(targets)
    for name in policies[1:]:
        print(f"{name}: " + _summary_line(family_targets([row for row in rows if row.policy == name])))
    print(f"wall {time.perf_counter() - started:.0f} s for {len(seeds)} scenarios")
    report = {
        "policy": policies[0],
        "scenarios": len(judged),
        "targets": {name: _as_json(target) for name, target in targets.items()},
    }
    print(json.dumps(report))
    if args.json is not None:
        args.json.write_text(json.dumps({**report, "rows": [asdict(row) for row in rows]}, indent=1) + "\n")
    return 0 if all(target.ok for target in targets.values()) else 1


def family_targets(rows: Sequence[Row]) -> dict[str, Target]:
    """The family's targets over `rows` (one policy's); a target with nothing to measure is a miss."""
    where = f"{len(rows)} scenarios"
    targets = {
        "worst_mean_ratio": _worst(rows, "mean_ratio", SCENARIO_RATIO),
        "worst_p95_ratio": _worst(rows, "p95_ratio", SCENARIO_RATIO),
        "oom_failures": at_most(sum(row.oom_failures for row in rows) if rows else None, 0, where),
        "unfinished_jobs": at_most(sum(row.unfinished for row in rows) if rows else None, 0, where),
        "geomean_mean_ratio": at_most(_geomean([row.mean_ratio for row in rows]), MEAN_GEO, where),
        "geomean_p95_ratio": at_most(_geomean([row.p95_ratio for row in rows]), P95_GEO, where),
        "geomean_bytes_ratio": _bytes_target(rows),
    }
    classes = [row for row in rows if row.high_p95_ratio is not None]
    geo = _geomean([row.high_p95_ratio for row in classes if row.high_p95_ratio is not None])
    worst = _worst(classes, "high_p95_ratio", HIGH_RATIO)
    geo_note = NO_DATA if geo is None else f"{geo:.3f}"
    targets["worst_high_class_p95_ratio"] = Target(
        worst.value, worst.target, worst.ok, f"{worst.note}; geometric mean {geo_note}"
    )
    owners = [row for row in rows if row.jain is not None]
    lowest = min(owners, key=lambda row: row.jain or 0.0, default=None)
    targets["lowest_overload_jain"] = at_least(
        None if lowest is None else lowest.jain,
        JAIN_TARGET,
        f"{len(owners)} scenarios with equal owners" + (f"; lowest {lowest.scenario}" if lowest else ""),
    )
    return targets


@dataclass(frozen=True)
class _Task:
    """One scenario for a worker: the policies to judge and show, and the baselines known so far."""

    seed: int
    policies: tuple[str, ...]
    shown: tuple[str, ...]
    cache: dict[str, dict[str, object]]


def _run_scenario(task: _Task) -> tuple[list[Row], dict[str, dict[str, object]]]:
    """One scenario: every baseline (from the cache where it holds them) and each policy under test."""
    seed, policies, cache = task.seed, task.policies, task.cache
    member = scenario(seed)
    key = _content_key(member)
    fresh: dict[str, dict[str, object]] = {}
    reports: dict[str, PolicyReport] = {}
    seconds: dict[str, float] = {}
    for name in (*BASELINES, *task.shown):
        entry = f"{member.name}/{name}/{key}"
        if entry in cache:
            reports[name] = PolicyReport(**cache[entry])  # type: ignore[arg-type]
        else:
            started = time.process_time()
            reports[name] = simulate(member.pool, member.jobs, get_policy(name)).report
            seconds[name] = time.process_time() - started
            fresh[entry] = asdict(reports[name])
    bar = baseline_bar({name: reports[name] for name in BASELINES})
    # The floor is kept too, keyed also on the bounds' own code (scheduler/sim/bounds*.py).
    floor_entry = f"{member.name}/floor/{key}/{_bounds_hash()}"
    if floor_entry not in cache:
        floor = latency_floor(member.pool, member.jobs)
        fresh[floor_entry] = {"mean_s": floor.mean_s, "p95_s": floor.p95_s}
    floor_s = fresh.get(floor_entry) or cache[floor_entry]
    floor_mean, floor_p95 = float(floor_s["mean_s"]), float(floor_s["p95_s"])  # type: ignore[arg-type]
    rows = []
    for name in policies:
        started = time.process_time()
        window = member.overload or (float("inf"), float("inf"))
        recorder = Recorder(get_policy(name), since=window[0], until=window[1], name=name)
        ours = simulate(member.pool, member.jobs, recorder).report
        seconds[name] = time.process_time() - started
        rows.append(_row(member, ours, bar, floor_mean, floor_p95, recorder, seconds[name]))
    _print_scenario(member, [*reports.values()], seconds)
    return rows, fresh


def _row(
    member: Scenario,
    ours: PolicyReport,
    bar: dict[str, PolicyReport],
    floor_mean: float,
    floor_p95: float,
    recorder: Recorder,
    cpu: float,
) -> Row:
    best = {metric: best_of(bar, metric) for metric in ("mean_latency_s", "p95_latency_s")}
    best["bytes_downloaded"] = best_of(bytes_bar(bar), "bytes_downloaded")
    high = None
    if "priority-classes" in member.traits:
        top = min(float(r.extra.get("high_p95_latency_s", 0.0)) for r in bar.values())
        high = _ratio(float(ours.extra.get("high_p95_latency_s", 0.0)), top)
    jain = None
    if member.overload is not None:
        owners = sorted({job.owner for job in member.jobs})
        jain = jain_index([recorder.owner_seconds.get(owner, 0.0) for owner in owners])
    return Row(
        scenario=member.name,
        policy=ours.policy,
        traits=tuple(sorted(member.traits)),
        gpus=member.pool.gpu_count,
        jobs=ours.jobs,
        mean_ratio=_ratio(ours.mean_latency_s, best["mean_latency_s"][1]),
        p95_ratio=_ratio(ours.p95_latency_s, best["p95_latency_s"][1]),
        bytes_ratio=_ratio(float(ours.bytes_downloaded), best["bytes_downloaded"][1]),
        floor_mean_ratio=_ratio(floor_mean, best["mean_latency_s"][1]),
        floor_p95_ratio=_ratio(floor_p95, best["p95_latency_s"][1]),
        oom_failures=ours.oom_failures,
        unfinished=ours.jobs - ours.completed,
        high_p95_ratio=high,
        jain=None if jain is None else round(jain, 4),
        eta_submit_error=None if ours.submit_eta_error is None else round(ours.submit_eta_error, 4),
        bar=",".join(sorted(bar)),
        best={metric: name for metric, (name, _) in best.items()},
        cpu_s=round(cpu, 2),
    )


def _ratio(ours: float, best: float) -> float:
    # Nothing to beat and nothing spent (no bytes anywhere) is a tie, not infinitely worse.
    if best <= 0:
        return 1.0 if ours <= 0 else math.inf
    return round(ours / best, 4)


def _bytes_target(rows: Sequence[Row]) -> Target:
    # Where the best baseline downloaded nothing a ratio has no meaning: those scenarios are left
    # out of the mean and named in the note (with how many of them the policy downloaded in).
    finite = [row.bytes_ratio for row in rows if not math.isinf(row.bytes_ratio)]
    apart = [row.scenario for row in rows if math.isinf(row.bytes_ratio)]
    note = f"{len(finite)} scenarios"
    if apart:
        note += f"; left out, the best baseline downloaded nothing but the policy did: {', '.join(apart)}"
    return at_most(_geomean(finite), BYTES_GEO, note)


def _worst(rows: Sequence[Row], metric: str, limit: float) -> Target:
    values = [(getattr(row, metric), row.scenario) for row in rows if getattr(row, metric) is not None]
    if not values:
        return at_most(None, limit, "no scenario to measure")
    worst, name = max(values)
    missed = sum(value > limit for value, _ in values)
    return at_most(worst, limit, f"{name}; {missed} of {len(values)} scenarios over {limit}")


def _geomean(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if any(value <= 0 or math.isinf(value) for value in values):
        return math.inf if any(math.isinf(value) for value in values) else 0.0
    return round(geometric_mean(values), 4)


def _content_key(member: Scenario) -> str:
    """A hash of the scenario's pool and jobs and of the code the baselines' figures depend on."""
    digest = hashlib.sha256()
    digest.update(repr(member.pool).encode())
    for job in member.jobs:
        digest.update(json.dumps(job.to_json(), sort_keys=True).encode())
    digest.update(_code_fingerprint().encode())
    return digest.hexdigest()[:16]


_FINGERPRINT: list[str] = []


def _bounds_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "scheduler" / "sim").glob("bounds*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _code_fingerprint() -> str:
    if not _FINGERPRINT:
        digest = hashlib.sha256()
        for folder in CACHE_CODE:
            for path in sorted((ROOT / folder).rglob("*")):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and path.suffix in (".py", ".json") and not relative.startswith(CACHE_SKIP):
                    digest.update(relative.encode())
                    digest.update(path.read_bytes())
        _FINGERPRINT.append(digest.hexdigest())
    return _FINGERPRINT[0]


def _load_cache(path: Path | None) -> dict[str, dict[str, object]]:
    if path is None or not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _save_cache(path: Path | None, cache: dict[str, dict[str, object]]) -> None:
    if path is not None:
        # Written aside and renamed: a reader never sees half a file.
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(cache, sort_keys=True))
        partial.replace(path)


def _print_scenario(member: Scenario, reports: list[PolicyReport], seconds: dict[str, float]) -> None:
    line = ", ".join(f"{r.policy} {r.mean_latency_s:.0f}/{r.p95_latency_s:.0f}" for r in reports)
    cpu = ", ".join(f"{name} {value:.1f}" for name, value in seconds.items())
    print(f"{member.name}: baselines mean/p95 s: {line}; CPU s: {cpu}", flush=True)


def _print_rows(rows: Sequence[Row]) -> None:
    print(
        f"{'scenario':12} {'policy':10} {'GPUs':>4} {'jobs':>5} {'mean':>6} {'p95':>6} {'bytes':>6} "
        f"{'fl.mn':>6} {'fl.95':>6} {'OOM':>3} {'unf':>3} {'hi95':>6} {'jain':>6} {'eta':>6}  traits"
    )
    for row in rows:
        print(
            f"{row.scenario:12} {row.policy[:10]:10} {row.gpus:4} {row.jobs:5} {row.mean_ratio:6.3f} "
            f"{row.p95_ratio:6.3f} {row.bytes_ratio:6.3f} {row.floor_mean_ratio:6.3f} "
            f"{row.floor_p95_ratio:6.3f} {row.oom_failures:3} {row.unfinished:3} "
            f"{_optional(row.high_p95_ratio):>6} {_optional(row.jain):>6} "
            f"{_optional(row.eta_submit_error):>6}  {','.join(row.traits)}"
        )


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_targets(targets: dict[str, Target]) -> None:
    print(f"{'target':28} {'value':>10} {'limit':>6}  ok")
    for name, t in targets.items():
        value = NO_DATA if t.value is None else t.value
        print(f"{name:28} {value!s:>10} {t.target:>6}  {'yes' if t.ok else 'NO'}  {t.note}")


def _summary_line(targets: dict[str, Target]) -> str:
    return ", ".join(f"{name} {t.value}{'' if t.ok else ' (missed)'}" for name, t in targets.items())


def _as_json(target: Target) -> dict[str, object]:
    value = target.value
    row: dict[str, object] = {"value": None if value is None or math.isinf(value) else value}
    row.update({"target": target.target, "ok": target.ok})
    if target.note:
        row["note"] = target.note
    return row


if __name__ == "__main__":
    sys.exit(main())
