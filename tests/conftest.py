"""Shared fixtures: one weight cache per test session, so each tiny model is built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.weights import WeightCache


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def weight_cache(cache_dir: Path) -> WeightCache:
    return WeightCache(cache_dir)
