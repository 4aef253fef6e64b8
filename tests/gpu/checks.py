"""Every GPU check of the farm, one after another with this interpreter, each under its own time
limit: the scripts that print JSON lines have them passed through, and each script ends with one
JSON line of its own (`{"check": NAME, "exit": CODE, "seconds": S}`; exit 3 is "nothing to check
here": no CUDA, no kernel beside sdpa, no room on disk). Exit 0 when none failed, else the first
failure's code.

    python tests/gpu/checks.py [--out DIR] [--quick] [--only NAME,...] [--extra NAME=ARGS]... [--budget S]
    (make gpu-smoke)

`--quick` runs the checks that can at sizes that take seconds, judging no target (CPU too); `--out`
keeps each script's log and its --json file; `--extra smoke="--models wan-tiny"` adds arguments to
one check; `--budget S` ends the run within S seconds: a check starts only with 20 s left (else it
says `{"check": NAME, "skipped": ...}`) and is stopped at the end (exit 124), what it printed by
then passed through. Planned to take under 10 minutes on one GPU at full size, the 14B's cold
start aside (the time limits below are each check's ceiling, not its estimate; not yet timed on a
GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTHING_TO_CHECK = 3
TIMED_OUT = 124
MIN_START = 20  # seconds: with less left of the budget, a check is not started
# name: (script, its arguments, quick arguments or None when there is no quick form, time limit s).
# In this order: what no GPU has run yet first, the smoke (run on an H100 before) and the 14B's cold
# start (28.6 GB written and read) last, so that a run cut short loses the least.
CHECKS: dict[str, tuple[str, list[str], list[str] | None, int]] = {
    "sage": ("sage.py", [], ["--tokens", "4096", "--repeat", "2"], 120),
    "fp16": ("fp16.py", [], ["--layers", "1", "--size", "64x64x1"], 300),
    "cold_start": ("cold_start.py", [], ["--layers", "1", "--target", "0"], 240),
    "step_speed": (
        "step_speed.py",
        [],
        ["--layers", "1", "--size", "64x64x1", "--steps", "4", "--target", "inf"],
        300,
    ),
    # Profiles 1 (whole, bf16) and 4 (sliced, int8): a tiny load under mmgp took 1.7-5 s on an H100.
    "lora_mmgp": (
        "lora_mmgp.py",
        ["--profiles", "1,4"],
        ["--families", "wan", "--profiles", "4"],
        300,
    ),
    "weight_files": (
        "weight_files.py",
        ["--profiles", "1,4"],
        ["--families", "wan", "--profiles", "1,3"],
        240,
    ),
    "resume": ("resume.py", ["--json", "{out}/resume.json"], None, 240),
    "step_skip": ("step_skip.py", ["--json", "{out}/step_skip.json"], None, 240),
    # All seven profiles ran on an H100 (2026-11-26); here each kernel at one profile of each kind.
    "smoke": ("smoke.py", ["--json", "{out}/smoke.json", "--profiles", "1,4"], None, 420),
    "cold_start_14b": ("cold_start.py", ["--model", "14b"], None, 420),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="each check's log and JSON file (a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="only checks with a quick form, at that size")
    parser.add_argument("--only", help="comma-separated names: " + ", ".join(CHECKS))
    parser.add_argument("--extra", action="append", default=[], help="NAME=ARGS: more arguments for a check")
    parser.add_argument("--budget", type=float, help="seconds the whole run may take")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",")] if args.only else list(CHECKS)
    extra = {name: shlex.split(value) for name, _, value in (item.partition("=") for item in args.extra)}
    unknown = sorted((set(names) | set(extra)) - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="wanfarm-gpu-checks-"))
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget if args.budget is not None else math.inf
    failure = 0
    for name in names:
        script, arguments, quick, limit = CHECKS[name]
        if args.quick and quick is None:
            continue
        left = deadline - time.monotonic()
        if left < MIN_START:
            print(
                json.dumps({"check": name, "skipped": f"{max(left, 0):.0f} s left of the run's budget"}),
                flush=True,
            )
            continue
        chosen = quick if args.quick and quick is not None else arguments
        command = [sys.executable, str(HERE / script), *chosen, *extra.get(name, [])]
        command = [part.format(out=out) for part in command]
        code, seconds = _run(name, command, min(limit, left), out / f"{name}.log")
        print(json.dumps({"check": name, "exit": code, "seconds": round(seconds, 1)}), flush=True)
        if code not in (0, NOTHING_TO_CHECK) and not failure:
            failure = code
    return failure


def _run(name: str, command: list[str], limit: float, log: Path) -> tuple[int, float]:
    """Run one check; its JSON lines pass through (those printed before a timeout too), all it
    prints goes to `log`. TIMED_OUT past `limit` seconds."""
    started = time.monotonic()
    with log.open("w") as sink:
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=sink, text=True, timeout=limit)
            printed, code = done.stdout, done.returncode
        except subprocess.TimeoutExpired as expired:
            partial = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
            sink.write(f"{name}: over its {limit:.0f} s\n")
            printed, code = partial, TIMED_OUT
        sink.write(printed)
    for line in printed.splitlines():
        if line.startswith("{"):
            print(line, flush=True)
    return code, time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
