"""The controller stays light: torch and diffusers load only inside the agents' processes; the
server never loads the command line, and the dashboard's routes need nothing of the controller."""

from __future__ import annotations

import subprocess
import sys


def _loaded(imports: str, names: str) -> str:
    """What `names` (an expression over sys.modules) gives after `imports` in a fresh interpreter."""
    probe = f"import sys; {imports}; print({names})"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout


def test_importing_the_controller_does_not_load_torch() -> None:
    heavy = "sorted(m for m in ('torch', 'diffusers', 'transformers', 'mmgp') if m in sys.modules)"
    assert _loaded("import controller.farm, controller.cli, controller.api.app", heavy).strip() == "[]"


def test_the_server_does_not_load_the_command_line() -> None:
    cli = "sorted(m for m in sys.modules if m.startswith('controller.cli'))"
    assert _loaded("import controller.farm, controller.api.app", cli).strip() == "[]"


def test_the_dashboard_routes_need_no_controller_module() -> None:
    controller = "sorted(m for m in sys.modules if m.split('.')[0] == 'controller')"
    assert _loaded("import dashboard.routes", controller).strip() == "[]"
