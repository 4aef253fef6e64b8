"""The scheduler stays a pure, light package: importing it pulls in no GPU or cluster library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "diffusers")


def test_importing_every_scheduler_module_loads_no_torch_ray_or_diffusers() -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        "import scheduler\n"
        "for info in pkgutil.walk_packages(scheduler.__path__, 'scheduler.'):\n"
        "    importlib.import_module(info.name)\n"
        "from scheduler.registry import get_policy\n"
        "get_policy('greedy')\n"
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""
