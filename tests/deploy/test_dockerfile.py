"""deploy/Dockerfile installs what the Makefile installs, in the same order, and runs the console
script pyproject.toml declares: read from both files, so drift fails here."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

from tests.deploy.validation import REPO

DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_torch_is_installed_first_at_the_makefiles_pin() -> None:
    pin = re.search(r"^TORCH := (\S+)$", MAKEFILE, re.M)
    assert pin, "the Makefile's TORCH pin moved"
    installs = _pip_installs()
    assert pin.group(1) in installs[0]
    assert "--index-url https://download.pytorch.org/whl/cu" in installs[0]  # a CUDA build


def test_the_project_is_installed_with_the_makefiles_extras_minus_dev_plus_cuda() -> None:
    make_extras = re.search(r"pip install -q -e '\.\[([\w,]+)\]'", MAKEFILE)
    assert make_extras, "the Makefile's project install moved"
    expected = (set(make_extras.group(1).split(",")) - {"dev"}) | {"cuda"}
    project = [line for line in _pip_installs() if re.search(r"'\.\[", line)]
    assert len(project) == 1
    extras = re.search(r"'\.\[([\w,]+)\]'", project[0])
    assert extras
    assert set(extras.group(1).split(",")) == expected
    assert expected <= set(PYPROJECT["project"]["optional-dependencies"])
    assert _pip_installs().index(project[0]) > 0  # after torch


def test_the_entrypoint_is_the_declared_console_script() -> None:
    (script,) = PYPROJECT["project"]["scripts"]
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M)
    assert entrypoint
    assert json.loads(entrypoint.group(1)) == [script]


def test_the_image_runs_as_a_user_with_cache_and_data_volumes() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    volume = re.search(r"^VOLUME (.+)$", DOCKERFILE, re.M)
    assert volume
    assert set(json.loads(volume.group(1))) == {"/var/lib/wanfarm/weights", "/var/lib/wanfarm/data"}
    assert re.search(r"^ENV WANFARM_CACHE=/var/lib/wanfarm/weights$", DOCKERFILE, re.M)


def test_the_image_copies_every_package_pyproject_ships() -> None:
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {shlex.split(line)[1] for line in re.findall(r"^COPY .+$", DOCKERFILE, re.M)}
    assert {package.rstrip("*") for package in packages} <= copied


def _pip_installs() -> list[str]:
    """The Dockerfile's `pip install` commands after the venv is made, in order (continuations joined)."""
    joined = DOCKERFILE.replace("\\\n", " ")
    runs = re.findall(r"^RUN (.+)$", joined, re.M)
    commands = [part.strip() for run in runs for part in run.split("&&")]
    return [
        command
        for command in commands
        if command.startswith("pip install") and "--upgrade pip" not in command
    ]
