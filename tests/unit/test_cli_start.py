"""The commands that only read files or talk to a farm start light: no torch, diffusers,
transformers, Ray or httpx is imported, and each still does its job (exit 0)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli_cold_start import LIGHT_COMMANDS, light_farm, run_cold


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with light_farm(tmp_path_factory.mktemp("farm")) as url:
        yield url


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_a_light_command_succeeds_without_importing_a_heavy_package(command: str, server: str) -> None:
    run = run_cold(command, server, trace_imports=True)
    assert run.exit_code == 0, run.stderr[-2000:]
    assert run.heavy == (), f"`wanfarm {command}` imported {', '.join(run.heavy)}"


def test_a_dry_run_still_refuses_invalid_settings_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "no-such-model", "prompt": "x"}')
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "render", "--dry-run", str(bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "no-such-model" in done.stderr and "nothing rendered" in done.stderr
