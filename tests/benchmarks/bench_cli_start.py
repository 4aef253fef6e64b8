"""Command-line start: each command that only reads files or talks to a farm (`--help`, `models`,
`render --dry-run`, `submit`, `status`, `agents`, `cancel`), timed as a cold process start against
a farm's API served in this process, median of 5 runs. Target: every one under 0.5 s.

Run: `make bench` (or `python -m tests.benchmarks.bench_cli_start`). Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from tests.unit.cli_cold_start import LIGHT_COMMANDS, light_farm, run_cold

RUNS = 5
TARGET_S = 0.5


def main() -> int:
    medians: dict[str, float] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wanfarm-bench-cli-") as work, light_farm(Path(work)) as url:
        for command in LIGHT_COMMANDS:
            runs = [run_cold(command, url) for _ in range(RUNS)]
            if any(run.exit_code != 0 for run in runs):
                failed.append(command)
            medians[command] = round(statistics.median(run.seconds for run in runs), 3)
    ok = not failed and max(medians.values()) <= TARGET_S
    result = {"median_s": medians, "slowest_s": max(medians.values()), "failed": failed}
    print(json.dumps(result | {"runs": RUNS, "target_s": TARGET_S, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
