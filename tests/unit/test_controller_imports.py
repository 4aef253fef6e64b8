"""The controller stays light: torch and diffusers load only inside the agents' processes."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_controller_does_not_load_torch() -> None:
    probe = (
        "import sys, controller.farm, controller.cli, controller.api.app; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'mmgp') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
