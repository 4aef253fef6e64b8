"""`wanfarm models`: the catalogue, with what each model needs at its default size, and the
installed plugins (processing.plugins)."""

from __future__ import annotations

import json
from dataclasses import asdict

from controller.catalogue_view import model_row
from controller.cli.exits import EXIT_OK
from models.catalogue import catalogue, definitions
from processing import plugins


def models_command(as_json: bool) -> int:
    rows = [model_row(preset) for preset in catalogue().values()]
    if as_json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return EXIT_OK
    print(
        f"{'id':<24} {'task':<5} {'weights':>8} {'VRAM p1':>8} {'VRAM p5':>8} {'RAM p5':>7}  "
        f"{'default size':<16} wangp ids"
    )
    for row in rows:
        print(
            f"{row.id:<24} {row.task:<5} {row.weights_gb:>7.1f}G {row.vram_gb['1']:>7.1f}G "
            f"{row.vram_gb['5']:>7.1f}G {row.ram_gb['5']:>6.1f}G  {row.default_size:<16} "
            f"{','.join(row.wangp_model_types) or '-'}"
        )
    for verdict in definitions():  # WanGP definitions in $WANFARM_MODELS that the farm cannot serve
        if verdict.preset is None:
            print(f"refused {verdict.id} ({verdict.architecture or '?'}): {verdict.reason}")
    print()
    _print_plugins()
    return EXIT_OK


def _print_plugins() -> None:
    """The installed plugins: name, entry-point group, the package and version, the keys it reads."""
    print(f"{'plugin':<20} {'group':<24} {'package':<28} settings keys")
    for info in plugins.installed():
        package = f"{info.distribution} {info.version}"
        print(f"{info.name:<20} {info.group.value:<24} {package:<28} {', '.join(info.keys) or '-'}")
    for line in plugins.broken():
        print(f"broken plugin {line}")
