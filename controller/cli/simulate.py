"""`wanfarm simulate`: run policies over a pool and a trace in the simulator and compare them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from controller.cli.exits import EXIT_INVALID, EXIT_OK
from scheduler.policy import Policy
from scheduler.registry import get_policy
from scheduler.sim.bounds import latency_floor
from scheduler.sim.engine import simulate
from scheduler.sim.formats import SimInputError, load_pool
from scheduler.sim.metrics import SimResult
from scheduler.sim.report import as_json, as_table, write_chart
from scheduler.sim.traces import check_trace, load_trace


def simulate_command(
    pool_path: Path,
    trace_path: Path,
    policy_names: list[str],
    seed: int,
    as_json_output: bool,
    plot: Path | None,
) -> int:
    """Simulate each policy on the same pool, trace and seed; print a table (or JSON) with the latency
    floor no policy can beat there, and draw a chart."""
    try:
        pool = load_pool(pool_path)
        # Read the trace once up front so a bad line is exit 2 before minutes of simulation.
        check_trace(trace_path)
        policies = _policies(policy_names)
    except (SimInputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    results: list[SimResult] = [
        simulate(pool, load_trace(trace_path), policy, seed=seed) for policy in policies
    ]
    floor = latency_floor(pool, load_trace(trace_path), seed=seed)
    if as_json_output:
        print(json.dumps(as_json(results, floor), indent=2))
    else:
        print(as_table(results, floor))
    if plot is not None:
        write_chart(results, plot)
        if not as_json_output:
            print(f"chart written to {plot}")
    return EXIT_OK


def _policies(names: list[str]) -> list[Policy]:
    wanted = [name.strip() for name in names if name.strip()]
    if not wanted:
        raise ValueError("--policy needs at least one policy name")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"--policy names a policy twice: {','.join(wanted)}")
    # A fresh instance per run: a learning policy must not carry what it learnt into the next.
    return [get_policy(name) for name in wanted]
