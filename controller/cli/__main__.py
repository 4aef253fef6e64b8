"""`python -m controller.cli`: the same as the `wanfarm` command."""

from __future__ import annotations

import sys

from controller.cli import main

sys.exit(main())
