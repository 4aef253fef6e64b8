"""Running a script of tests/gpu in this process, as `make test` runs them on the CPU."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

GPU = Path(__file__).resolve().parent / "gpu"


def run_gpu_script(
    name: str, argv: list[str], capsys: pytest.CaptureFixture[str], **replaced: Any
) -> tuple[int, list[dict[str, Any]]]:
    """tests/gpu/`name`'s main on `argv`, with `replaced` names swapped in its globals: its exit
    code and the JSON lines it printed."""
    main = runpy.run_path(str(GPU / name))["main"]
    main.__globals__.update(replaced)
    code = main(argv)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines
