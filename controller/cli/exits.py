"""The command line's exit codes, one set for every command."""

from __future__ import annotations

EXIT_OK = 0  # everything asked for succeeded
EXIT_FAILED = 1  # some of it failed, or the farm could not be reached
EXIT_INVALID = 2  # invalid input: nothing was done
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C
