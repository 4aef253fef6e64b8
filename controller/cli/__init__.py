"""The `wanfarm` command line: the parser here, one module per family of commands, and the farm's
HTTP client. Exit codes: 0 all succeeded, 1 some failed, 2 invalid input, 130 interrupted.

Each command's module is imported only when that command runs, so `--help` and the commands that
only read files or talk to a farm start without torch, diffusers or Ray."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from controller.cli.exits import EXIT_INTERRUPTED, EXIT_OK
from controller.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`wanfarm models | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OK
    return code


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The `wanfarm` command: `main`, then exit."""
    code = main(argv)
    # On its way out Python collects every object it holds, ~60 ms once pydantic is loaded; frozen
    # objects are not scanned, and the process is ending anyway.
    gc.freeze()
    sys.exit(code)
