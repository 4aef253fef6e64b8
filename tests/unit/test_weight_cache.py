"""The weight cache: a byte budget with LRU eviction that spares models in use, and the S3 mirror
as a source between the cache and the builder/hub."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gpu_agent.storage import S3Store, S3WeightMirror, StoredObject, upload_weights
from models.catalogue import get_model
from models.weights import COMPLETE, MIRROR_SOURCE, WeightCache, WeightsUnavailable
from tests.unit.test_storage import moto_s3, new_bucket

# On-disk sizes of the tiny models: wan-tiny about 0.37 MB, ltx-tiny 0.83 MB, flux-tiny 0.82 MB.
WAN, LTX, FLUX = get_model("wan-tiny"), get_model("ltx-tiny"), get_model("flux-tiny")
# Holds ltx + wan (1.21 MB) or ltx + flux (1.65 MB), not all three (2.02 MB).
BUDGET_FOR_TWO = 1_700_000
BUILT = "built offline"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3Store:
    return S3Store(new_bucket(s3_endpoint), prefix="farm/", endpoint_url=s3_endpoint, region="us-east-1")


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != COMPLETE
    }


def test_over_budget_the_least_recently_used_model_is_evicted(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", budget_bytes=BUDGET_FOR_TWO)
    cache.ensure(LTX)
    cache.ensure(WAN)
    time.sleep(0.05)  # past the file system's timestamp granularity
    cache.ensure(LTX)  # a cache hit counts as use: wan-tiny is now the least recent
    assert cache.cached_ids() == ["ltx-tiny", "wan-tiny"]

    cache.ensure(FLUX)

    assert cache.cached_ids() == ["flux-tiny", "ltx-tiny"]
    assert cache.last_trim is not None and cache.last_trim.evicted == ("wan-tiny",)
    assert cache.cached_bytes() == cache.last_trim.cached_bytes <= BUDGET_FOR_TWO
    assert not list(cache.root.glob(".evicting-*"))


def test_a_cached_file_cut_short_is_fetched_anew_with_its_own_bytes(tmp_path: Path) -> None:
    # Found by the chaos suite: a truncated cached file failed every later load of the model on its node.
    cache = WeightCache(tmp_path / "cache")
    folder = cache.ensure(WAN)
    whole = files_of(folder)
    victim = max(folder.rglob("*.safetensors"), key=lambda path: path.stat().st_size)
    with open(victim, "r+b") as handle:
        handle.truncate(victim.stat().st_size // 2)
    assert not cache.is_cached(WAN)
    assert files_of(cache.ensure(WAN)) == whole
    assert cache.is_cached(WAN) and cache.last_source("wan-tiny") == BUILT


def test_a_model_in_use_is_never_evicted(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", budget_bytes=1_000_000)  # one model at a time
    cache.ensure(LTX)
    with cache.using("ltx-tiny"):
        cache.ensure(FLUX)
        assert cache.cached_ids() == ["flux-tiny", "ltx-tiny"]
        assert cache.last_trim is not None and cache.last_trim.over_budget
        assert not cache.evict("ltx-tiny")
    # Released, it is the least recently used and goes at the next check.
    assert cache.trim().evicted == ("ltx-tiny",)
    assert cache.cached_ids() == ["flux-tiny"]


def test_a_model_used_by_another_process_is_not_evicted(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", budget_bytes=1_000_000)
    cache.ensure(LTX)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from models.weights import WeightCache\n"
            "with WeightCache(Path(sys.argv[1])).using('ltx-tiny'):\n"
            "    print('held', flush=True); sys.stdin.read()",
            str(cache.root),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cache.ensure(FLUX)
        assert cache.cached_ids() == ["flux-tiny", "ltx-tiny"]
    finally:
        holder.communicate("", timeout=30)  # end of stdin lets it leave the block and exit
    assert cache.evict("ltx-tiny") and cache.cached_ids() == ["flux-tiny"]


def test_a_model_bigger_than_the_budget_is_fetched_and_everything_else_evicted(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", budget_bytes=500_000)
    cache.ensure(WAN)
    folder = cache.ensure(LTX)
    assert (folder / "model_index.json").is_file() and cache.cached_ids() == ["ltx-tiny"]
    assert cache.last_trim is not None and cache.last_trim.evicted == ("wan-tiny",)
    assert cache.last_trim.over_budget


def test_without_a_budget_nothing_is_evicted(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache")
    for preset in (WAN, LTX, FLUX):
        cache.ensure(preset)
    assert cache.cached_ids() == ["flux-tiny", "ltx-tiny", "wan-tiny"]
    assert cache.last_trim is not None and cache.last_trim.evicted == ()


def test_a_fresh_cache_fills_from_the_mirror_with_identical_files(
    weight_cache: WeightCache, s3_store: S3Store, tmp_path: Path
) -> None:
    published = weight_cache.ensure(WAN)
    recording = RecordingStore(s3_store)
    uploaded = upload_weights(recording, "wan-tiny", published)
    assert recording.puts[-1] == "weights/wan-tiny/.complete"  # the marker goes up last
    assert len(recording.puts) == len(uploaded) == len(files_of(published)) + 1

    fresh = WeightCache(tmp_path / "fresh", mirror=S3WeightMirror(s3_store))
    folder = fresh.ensure(WAN)

    assert fresh.last_source("wan-tiny") == MIRROR_SOURCE
    assert weight_cache.last_source("wan-tiny") == BUILT
    assert files_of(folder) == files_of(published)


def test_a_mirror_without_its_complete_marker_is_not_used(
    weight_cache: WeightCache, s3_store: S3Store, tmp_path: Path
) -> None:
    upload_weights(s3_store, "wan-tiny", weight_cache.ensure(WAN))
    assert s3_store.delete_prefix("weights/wan-tiny/.complete") == 1  # as if cut off before it
    mirror = S3WeightMirror(s3_store)
    assert not mirror.has("wan-tiny") and s3_store.list("weights/wan-tiny/")

    fresh = WeightCache(tmp_path / "fresh", mirror=mirror)
    fresh.ensure(WAN)
    assert fresh.last_source("wan-tiny") == BUILT


def test_a_base_whose_transformer_a_file_replaces_is_fetched_without_its_weights(
    weight_cache: WeightCache, s3_store: S3Store, tmp_path: Path
) -> None:
    published = weight_cache.ensure(WAN)
    upload_weights(s3_store, "wan-tiny", published)
    fresh = WeightCache(tmp_path / "fresh", mirror=S3WeightMirror(s3_store))
    folder = fresh.ensure_components(WAN, ["transformer"])
    fetched, whole = files_of(folder), files_of(published)
    # Everything but the transformer's weights; its config, which the file's loader reads, too.
    assert set(fetched) == {name for name in whole if not name.startswith("transformer/")} | {
        "transformer/config.json"
    }
    assert all(fetched[name] == whole[name] for name in fetched)
    assert fresh.cached_ids() == ["wan-tiny~components"] and not fresh.is_cached(WAN)
    # Once the whole base is cached, it serves the files' jobs too.
    assert fresh.ensure(WAN) == fresh.ensure_components(WAN, ["transformer"]) == fresh.folder(WAN)
    built = WeightCache(tmp_path / "built").ensure_components(WAN, ["transformer"])  # tiny: built whole
    assert not list((built / "transformer").glob("*.safetensors")) and (built / "vae").is_dir()


def test_an_interrupted_mirror_download_caches_nothing(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", mirror=BreaksMidway())
    with pytest.raises(WeightsUnavailable, match="could not fetch wan-tiny from the weight mirror"):
        cache.ensure(WAN)
    assert cache.cached_ids() == [] and cache.last_source("wan-tiny") is None
    assert not list(cache.root.glob(".partial-*")) and not (cache.root / "wan-tiny").exists()


def test_an_unreachable_mirror_is_skipped(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache", mirror=Unreachable())
    cache.ensure(WAN)
    assert cache.last_source("wan-tiny") == BUILT


class RecordingStore:
    """Passes calls through to a store, keeping the keys put, in order."""

    def __init__(self, inner: S3Store) -> None:
        self.inner = inner
        self.puts: list[str] = []

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        self.puts.append(key)
        return self.inner.put_file(key, path, content_type)

    def get_file(self, key: str, dest: Path) -> None:
        self.inner.get_file(key, dest)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[StoredObject]:
        return self.inner.list(prefix)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return self.inner.url(key, expires_s)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)


class BreaksMidway:
    def has(self, model_id: str) -> bool:
        return True

    def download(self, model_id: str, dest: Path, without: Sequence[str] = ()) -> None:
        (dest / "transformer").mkdir(parents=True)
        (dest / "transformer" / "config.json").write_text("{}")
        raise ConnectionResetError("connection lost after one file")


class Unreachable:
    def has(self, model_id: str) -> bool:
        raise ConnectionRefusedError("no route to the mirror")

    def download(self, model_id: str, dest: Path, without: Sequence[str] = ()) -> None:
        raise AssertionError("never called when has() fails")
