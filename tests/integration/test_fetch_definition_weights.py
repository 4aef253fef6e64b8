"""Warming a model's weights without loading them (an idle agent's prefetch) fetches what a render
of it reads: a WanGP definition with a transformer file of its own gets its base's folder and that
file, not a copy of the base's folder under its own id (Kandinsky 5 Lite I2V's catalogue model is
such a file over Lite T2V's folder)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.catalogue import get_model
from models.runner import PipelineHost
from models.tiny import write_wan_single_file
from models.weights import WeightCache
from tests.served_definitions import definitions_folder, served_file
from tests.unit.tiny_agent import agent

FILE = "wan_tiny_finetune_mbf16.safetensors"


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def test_an_idle_agents_prefetch_of_a_definition_caches_its_base_folder_and_its_own_file(
    models_dir: Path, tmp_path: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = write_wan_single_file(tmp_path / FILE).read_bytes()
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    worker = agent(tmp_path, tmp_path / "cache")  # its job folders under temp_dir
    cache = worker.cache
    try:
        with served_file(FILE, body) as url:
            definition = {"model": {"architecture": "wan-tiny", "URLs": [url]}}
            (models_dir / "tiny_finetune.json").write_text(json.dumps(definition))
            assert worker.prefetch("tiny_finetune")  # idle: it warms the model
    finally:
        worker.workspace.release()
    own = sorted(path.name for path in cache.folder(get_model("tiny_finetune")).iterdir())
    assert own == [".complete", FILE]  # the file alone: the base's folder is cached as the base's
    # The base's folder (or its parts but the transformer the file replaces) under the base's id.
    [base] = [model_id for model_id in cache.cached_ids() if model_id != "tiny_finetune"]
    assert base.startswith("wan-tiny") and (cache.root / base / "model_index.json").is_file()


def test_a_model_without_a_file_of_its_own_caches_its_folder(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache")
    PipelineHost(cache).fetch(get_model("wan-tiny"))
    assert cache.cached_ids() == ["wan-tiny"]
