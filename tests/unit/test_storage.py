"""Object storage: a local folder and a real S3 endpoint (moto's server) behave the same."""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from gpu_agent.storage import (
    S3_MAX_ATTEMPTS,
    Backoff,
    LocalStore,
    ObjectMissing,
    ObjectStore,
    S3Store,
    StorageConfig,
    StorageError,
    StorageHealth,
    StorageMismatch,
    input_key,
    open_store,
    output_key,
    verify_stored,
    weights_prefix,
)

MIB = 1024 * 1024


@contextmanager
def moto_s3() -> Iterator[str]:
    """A real HTTP S3 endpoint on loopback, with throwaway credentials; yields its URL.

    Shared with test_weight_cache.py (it would live in a conftest).
    """
    with throwaway_credentials():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@contextmanager
def throwaway_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # Keep a developer's own AWS profile and config out of the tests.
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield


def new_bucket(endpoint: str) -> str:
    name = f"wanfarm-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3Store(new_bucket(endpoint), prefix="farm/", endpoint_url=endpoint, region="us-east-1")


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_file_round_trips_with_identical_bytes(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    stored = store.put_file("jobs/j1/outputs/a.mp4", write_file(tmp_path / "a.mp4", data), "video/mp4")
    assert stored.key == "jobs/j1/outputs/a.mp4" and stored.size == len(data)
    store.get_file("jobs/j1/outputs/a.mp4", tmp_path / "back" / "a.mp4")
    assert (tmp_path / "back" / "a.mp4").read_bytes() == data
    assert store.exists("jobs/j1/outputs/a.mp4") and not store.exists("jobs/j1/outputs/b.mp4")


def test_putting_a_key_twice_keeps_one_object_with_the_second_content(
    store: ObjectStore, tmp_path: Path
) -> None:
    store.put_file("jobs/j/outputs/x.png", write_file(tmp_path / "one", b"1" * 10), "image/png")
    store.put_file("jobs/j/outputs/x.png", write_file(tmp_path / "two", b"2" * 25), "image/png")
    [stored] = store.list("jobs/j/")
    assert stored.key == "jobs/j/outputs/x.png" and stored.size == 25
    store.get_file("jobs/j/outputs/x.png", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"2" * 25


def test_list_takes_a_string_prefix_and_delete_prefix_removes_only_its_objects(
    store: ObjectStore, tmp_path: Path
) -> None:
    source = write_file(tmp_path / "f", b"data")
    for key in [output_key("a", "x.mp4"), input_key("a", "i.png"), output_key("ab", "y.mp4")]:
        store.put_file(key, source, "application/octet-stream")

    assert [s.key for s in store.list("jobs/a/")] == ["jobs/a/inputs/i.png", "jobs/a/outputs/x.mp4"]
    assert len(store.list("jobs/a")) == 3  # S3 semantics: "jobs/ab/..." starts with "jobs/a" too
    assert [s.key for s in store.list("jobs/a/outputs/")] == ["jobs/a/outputs/x.mp4"]
    assert store.list("jobs/zz/") == []

    assert store.delete_prefix("jobs/a/") == 2
    assert not store.exists("jobs/a/outputs/x.mp4") and store.exists("jobs/ab/outputs/y.mp4")
    assert [s.key for s in store.list("")] == ["jobs/ab/outputs/y.mp4"]
    with pytest.raises(ValueError, match="empty prefix"):
        store.delete_prefix("")


def test_getting_a_missing_object_raises_and_writes_nothing(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(ObjectMissing):
        store.get_file("jobs/none/outputs/x.mp4", tmp_path / "out" / "x.mp4")
    assert list((tmp_path / "out").iterdir()) == []


def test_the_key_conventions() -> None:
    assert output_key("j1", "v.mp4") == "jobs/j1/outputs/v.mp4"
    assert input_key("j1", "start.png") == "jobs/j1/inputs/start.png"
    assert weights_prefix("wan-tiny") == "weights/wan-tiny/"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../x", "a\\b", "a//b", "", "a/./b", "a/"])
def test_keys_that_could_escape_the_root_are_refused(store: ObjectStore, tmp_path: Path, key: str) -> None:
    source = write_file(tmp_path / "f", b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_file(key, source, "text/plain")
    with pytest.raises(ValueError, match="invalid object key"):
        store.get_file(key, tmp_path / "dest")
    with pytest.raises(ValueError, match="invalid object key"):
        store.exists(key)
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_local_store_serves_files_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_file("jobs/j/outputs/v.mp4", write_file(tmp_path / "v", b"video"), "video/mp4")
    path = store.local_path("jobs/j/outputs/v.mp4")
    assert path == tmp_path / "store" / "jobs" / "j" / "outputs" / "v.mp4" and path.read_bytes() == b"video"
    assert store.url("jobs/j/outputs/v.mp4") is None
    with pytest.raises(ObjectMissing):
        store.local_path("jobs/j/outputs/missing.mp4")


def test_an_s3_presigned_url_serves_the_same_bytes(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3Store(new_bucket(s3_endpoint), prefix="farm/", endpoint_url=s3_endpoint, region="us-east-1")
    data = os.urandom(50_000)
    store.put_file("jobs/j/outputs/v.mp4", write_file(tmp_path / "v", data), "video/mp4")
    url = store.url("jobs/j/outputs/v.mp4", expires_s=60)
    assert url is not None and "X-Amz-Signature" in url and store.local_path("jobs/j/outputs/v.mp4") is None
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "video/mp4"


def test_a_large_file_goes_up_in_parts_and_round_trips(s3_endpoint: str, tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as out:
        for _ in range(20):
            out.write(os.urandom(MIB))
    store = S3Store(
        new_bucket(s3_endpoint),
        endpoint_url=s3_endpoint,
        multipart_threshold=5 * MIB,  # S3's smallest part size
        multipart_chunksize=5 * MIB,
    )
    stored = store.put_file("weights/m/transformer/big.safetensors", big, "application/octet-stream")
    # A multipart upload's ETag ends in "-<number of parts>".
    assert stored.size == 20 * MIB and stored.etag is not None and stored.etag.endswith("-4")
    store.get_file("weights/m/transformer/big.safetensors", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == big.read_bytes()


def test_open_store_builds_each_kind_from_its_config(s3_endpoint: str, tmp_path: Path) -> None:
    local = open_store(StorageConfig(kind="local", root=tmp_path / "store"))
    s3 = open_store(StorageConfig(kind="s3", bucket=new_bucket(s3_endpoint), endpoint_url=s3_endpoint))
    source = write_file(tmp_path / "f", b"hello")
    for store in (local, s3):
        store.put_file("a/b.txt", source, "text/plain")
        assert [(s.key, s.size) for s in store.list("a/")] == [("a/b.txt", 5)]
    assert isinstance(local, LocalStore) and isinstance(s3, S3Store)
    with pytest.raises(ValueError, match="bucket"):
        StorageConfig(kind="s3")
    with pytest.raises(ValueError, match="root"):
        StorageConfig(kind="local")


def test_a_store_survives_pickling_as_a_ray_actor_argument(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file("a/one.txt", write_file(tmp_path / "one", b"one"), "text/plain")  # connects first
    copy: ObjectStore = pickle.loads(pickle.dumps(store))
    copy.put_file("a/two.txt", write_file(tmp_path / "two", b"two"), "text/plain")
    assert [s.key for s in copy.list("a/")] == ["a/one.txt", "a/two.txt"]
    copy.get_file("a/one.txt", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"one"


def briefly_a_file(folder: Path, seconds: float) -> threading.Thread:
    """Make `folder` a regular file, so creating anything under it fails (even as root, unlike a
    chmod), and turn it back into nothing after `seconds`, from a thread."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"in the way")
    restore = threading.Timer(seconds, folder.unlink)
    restore.start()
    return restore


@dataclass
class FakeTime:
    """A clock that moves only when slept on."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_a_local_put_outlasts_a_folder_that_is_briefly_unusable(tmp_path: Path) -> None:
    health = StorageHealth()
    store = LocalStore(tmp_path / "store", health=health)
    source = write_file(tmp_path / "v.mp4", b"video" * 1000)
    restore = briefly_a_file(tmp_path / "store" / "jobs" / "j" / "outputs", 0.5)
    stored = store.put_file("jobs/j/outputs/v.mp4", source, "video/mp4")
    restore.join()
    assert stored.size == 5000
    assert (tmp_path / "store" / "jobs" / "j" / "outputs" / "v.mp4").read_bytes() == b"video" * 1000
    assert health.errors >= 1 and "put jobs/j/outputs/v.mp4: FileExistsError" in (health.last_error or "")


def test_a_local_get_outlasts_a_destination_folder_that_is_briefly_unusable(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_file("jobs/j/inputs/a.png", write_file(tmp_path / "a.png", b"png"), "image/png")
    restore = briefly_a_file(tmp_path / "inputs", 0.5)
    store.get_file("jobs/j/inputs/a.png", tmp_path / "inputs" / "a.png")
    restore.join()
    assert (tmp_path / "inputs" / "a.png").read_bytes() == b"png" and store.health.errors >= 1


def test_a_local_put_that_keeps_failing_gives_up_at_the_deadline_naming_the_error(tmp_path: Path) -> None:
    fake = FakeTime()
    store = LocalStore(tmp_path / "store", Backoff(0.2, 10.0, sleep=fake.sleep, clock=fake.clock))
    (tmp_path / "store" / "jobs" / "j").mkdir(parents=True)
    (tmp_path / "store" / "jobs" / "j" / "outputs").write_bytes(b"in the way for good")
    with pytest.raises(StorageError) as failed:
        store.put_file("jobs/j/outputs/v.mp4", write_file(tmp_path / "v.mp4", b"v"), "video/mp4")
    message = str(failed.value)
    assert "put jobs/j/outputs/v.mp4 failed 7 times in 10.0 s" in message
    assert "last: FileExistsError" in message and isinstance(failed.value.__cause__, FileExistsError)
    assert fake.slept == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 3.8])
    assert store.health.errors == 7


def test_a_missing_object_is_an_answer_not_retried(tmp_path: Path) -> None:
    fake = FakeTime()
    store = LocalStore(tmp_path / "store", Backoff(sleep=fake.sleep, clock=fake.clock))
    with pytest.raises(ObjectMissing):
        store.get_file("jobs/j/inputs/none.png", tmp_path / "none.png")
    assert fake.slept == [] and store.health.errors == 0


def test_an_s3_client_retries_in_botocores_standard_mode(s3_endpoint: str) -> None:
    store = S3Store(new_bucket(s3_endpoint), endpoint_url=s3_endpoint, region="us-east-1")
    assert store.exists("nothing/here") is False  # connects
    assert store._s3().meta.config.retries == {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS}
    assert store.health.errors == 0  # a 404 is an answer, not a failure


def test_an_s3_upload_outlasts_a_short_outage_of_the_endpoint(tmp_path: Path) -> None:
    with throwaway_credentials():
        first = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        first.start()
        host, port = first.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = new_bucket(endpoint)  # moto keeps its buckets across servers of one process
        # Its connections are all made during the outage: none kept alive from before it.
        store = S3Store(bucket, endpoint_url=endpoint, region="us-east-1")
        first.stop()
        assert first._server is not None
        first._server.server_close()  # stop() leaves the socket listening: refuse connections now
        second = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        back = threading.Timer(0.5, second.start)
        back.start()
        try:
            stored = store.put_file(
                "jobs/j/outputs/v.mp4", write_file(tmp_path / "v", b"v" * 99), "video/mp4"
            )
            assert stored.size == 99 and store.exists("jobs/j/outputs/v.mp4")
            assert store.health.errors >= 1 and "S3 PutObject" in (store.health.last_error or "")
        finally:
            back.join()
            second.stop()


def test_the_agent_checks_an_object_after_storing_it(store: ObjectStore, tmp_path: Path) -> None:
    source = write_file(tmp_path / "v.mp4", b"v" * 10)
    store.put_file("jobs/j/outputs/v.mp4", source, "video/mp4")
    assert verify_stored(store, "jobs/j/outputs/v.mp4", source).size == 10
    with pytest.raises(StorageMismatch, match=r"jobs/j/outputs/v\.mp4: 10 bytes in storage, 12 bytes"):
        verify_stored(store, "jobs/j/outputs/v.mp4", write_file(tmp_path / "longer", b"v" * 12))
    with pytest.raises(StorageMismatch, match="not in storage"):
        verify_stored(store, "jobs/j/outputs/v.mp", source)  # a prefix of a key is not the object


def test_a_stores_health_pickles_as_a_fresh_record(store: ObjectStore) -> None:
    health = StorageHealth()
    health.record("put a", OSError("boom"))
    copy = pickle.loads(pickle.dumps(health))
    assert (health.errors, copy.errors, copy.last_error) == (1, 0, None)
