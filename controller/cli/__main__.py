"""`python -m controller.cli`: the same as the `wanfarm` command."""

from __future__ import annotations

from controller.cli import run

run()
