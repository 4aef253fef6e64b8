"""Shared fixtures: one weight cache per test session, so each tiny model is built once; and a
guard that no test module leaves the variables that steer the code under test changed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.weights import WeightCache

# Prefixes of the variables that change what the code under test does (the hub's offline mode, S3
# credentials, the farm's own settings); a module that sets one must put it back.
STEERING_PREFIXES = ("HF_", "TRANSFORMERS_", "AWS_", "WANFARM_")


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (make test) the workers share the cores: each worker's torch, and the
    # processes it starts, get its share of them, as agents sharing a node do (gpu_agent/agent.py),
    # rather than every worker spinning a thread per core. Set before any test module imports torch.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def weight_cache(cache_dir: Path) -> WeightCache:
    return WeightCache(cache_dir)


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The machine's temporary folder, as agents find it (their job folders), made the test's own."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "tmp"


@pytest.fixture(scope="module", autouse=True)
def environment_left_as_found() -> Iterator[None]:
    """Fail the module that leaks a steering variable into the modules that run after it."""
    before = _steering()
    yield
    after = _steering()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"this module left environment variables changed: {', '.join(changed)}"


def _steering() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith(STEERING_PREFIXES)}
