"""The worker pods' preStop hook (helm/wanfarm, deploy/kuberay) is a command line `wanfarm` takes."""

from __future__ import annotations

import shlex

import pytest

from tests.deploy.render import render, the


def test_the_prestop_command_is_one_the_cli_takes() -> None:
    from controller.cli.parser import build_parser

    parser = build_parser()
    command = the(render(), "RayCluster")["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "lifecycle"
    ]["preStop"]["exec"]["command"]
    assert command[0] == "wanfarm"  # the image's console script (pyproject's [project.scripts])
    try:
        args = parser.parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(command)}` is not a command line `wanfarm` takes")
    assert (args.this_node, args.wait, args.finish, args.timeout) == (True, True, False, 285.0)
