"""The `wanfarm` command line. Exit codes: 0 all succeeded, 1 some failed, 2 invalid input,
130 interrupted."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from models.attention import AttentionMode
from models.profiles import Profile

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def default_cache() -> Path:
    """Where weights are cached: $WANFARM_CACHE, else ~/.cache/wanfarm/weights."""
    return Path(os.environ.get("WANFARM_CACHE", Path.home() / ".cache" / "wanfarm" / "weights"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanfarm", description="A render farm for open video models.")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser(
        "render",
        help="render WanGP settings on this machine",
        description="Render WanGP settings (.json object or list), a WanGP queue (.zip), the settings "
        "embedded in an output (.mp4/.png), or a folder of those, on this machine.",
    )
    render.add_argument("settings", type=Path, nargs="+", help="settings files or folders")
    render.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    render.add_argument("--dry-run", action="store_true", help="validate everything, render nothing")
    render.add_argument(
        "--profile", type=Profile.parse, default=Profile.P4, help="memory profile 1,2,3,3+,4,4+,5 (CUDA only)"
    )
    render.add_argument(
        "--attention", type=AttentionMode, default=AttentionMode.AUTO, choices=list(AttentionMode)
    )
    render.add_argument("--cache", type=Path, default=None, help="weight cache (default: $WANFARM_CACHE)")
    render.set_defaults(run=_run_render)

    models = commands.add_parser("models", help="list the model catalogue and what each model needs")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(run=_run_models)
    return parser


def _run_render(args: argparse.Namespace) -> int:
    from controller.render_command import render_command

    return render_command(
        args.settings, args.out, args.dry_run, args.profile, args.attention, args.cache or default_cache()
    )


def _run_models(args: argparse.Namespace) -> int:
    from controller.models_command import models_command

    return models_command(as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
