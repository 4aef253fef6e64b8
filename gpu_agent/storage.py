"""Object storage behind one interface: a folder on this machine, or an S3 bucket.

Inputs, outputs and the weight mirror all go through `ObjectStore`, so the agent and the API work
the same against a laptop folder, MinIO or AWS. Keys are relative, "/"-separated paths; both stores
refuse keys that could escape their root, so a key valid on one is valid on the other.

A storage error is often brief (a remount, a full disk being cleaned, a throttled or restarting S3
endpoint), so both stores retry: S3 through botocore's standard retry mode, the local store with
`Backoff`. Every failed attempt, retried or final, is counted in the store's `StorageHealth`, which
an agent reports in its inventory.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from models.weights import COMPLETE

# S3 allows 10,000 parts an upload; 16 MiB parts keep multi-GB weight files well under that
# without holding many large buffers in memory, and small outputs go up in one request.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
# Temporary files of an atomic write sit beside their target; listings skip them.
TEMP_PREFIX = ".wanfarm-tmp-"
# S3's DeleteObjects takes at most this many keys a request.
DELETE_BATCH = 1000
# botocore's standard mode waits rand(0, 1) x 50 ms x 2^i after the i-th failure (1 s x 2^i when
# throttled, at most 20 s): 10 attempts ride out about 13 s of outage on average, 25 s at most.
S3_RETRY_MODE = "standard"
S3_MAX_ATTEMPTS = 10
# HTTP answers that count as a failed S3 attempt; a 404 is an answer (no such object), not a fault.
S3_FAULT_STATUSES = frozenset({403, 408, 429})

T = TypeVar("T")


class ObjectMissing(KeyError):
    """No object is stored under the key."""


class StorageError(OSError):
    """A storage call that kept failing until its retry deadline; the message names the last error."""


class StorageMismatch(OSError):
    """An object that is absent or of the wrong size right after it was stored."""


class StorageHealth:
    """Failed storage attempts, retried or final, as one process saw them; thread-safe.

    It pickles as a new, empty record: counts belong to the process that saw the failures.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors = 0
        self.last_error: str | None = None

    def record(self, where: str, error: BaseException | str) -> None:
        """Count one failed attempt of `where` (e.g. "put jobs/j/outputs/v.mp4")."""
        described = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        with self._lock:
            self.errors += 1
            self.last_error = f"{where}: {described}"

    def __reduce__(self) -> tuple[type[StorageHealth], tuple[()]]:
        return (StorageHealth, ())


@dataclass(frozen=True)
class Backoff:
    """Retries of a local storage call: waits of `first_s` doubling, until `deadline_s` in all.

    The defaults wait 0.2, 0.4, 0.8, 1.6, 3.2 and then the rest of 10 s; the clock and the sleep
    are injectable so tests need not wait.
    """

    first_s: float = 0.2
    deadline_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def run(self, where: str, call: Callable[[], T], health: StorageHealth) -> T:
        """`call()`, retried on OSError; StorageError naming `where` and the last error at the end."""
        started = self.clock()
        delay = self.first_s
        attempts = 0
        while True:
            attempts += 1
            try:
                return call()
            except OSError as error:
                health.record(where, error)
                spent = self.clock() - started
                if spent >= self.deadline_s:
                    raise StorageError(
                        f"{where} failed {attempts} times in {spent:.1f} s; "
                        f"last: {type(error).__name__}: {error}"
                    ) from error
                self.sleep(min(delay, self.deadline_s - spent))
                delay *= 2


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store (its prefix is not part of it)
    size: int
    etag: str | None  # S3's ETag without quotes; None for local files


@dataclass(frozen=True)
class StorageConfig:
    """Where objects live; small and picklable, so it can travel to a Ray actor."""

    kind: Literal["local", "s3"]
    root: Path | None = None  # local
    bucket: str | None = None  # s3
    prefix: str = ""  # s3: prepended to every key, e.g. "wanfarm/"
    endpoint_url: str | None = None  # s3: MinIO, Ceph or a test server; None for AWS
    region: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "local" and self.root is None:
            raise ValueError("a local store needs a root folder")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("an s3 store needs a bucket")


class ObjectStore(Protocol):
    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        """Store the file under `key`, replacing any object already there."""
        ...

    def get_file(self, key: str, dest: Path) -> None:
        """Write the object to `dest` atomically; ObjectMissing when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[StoredObject]:
        """The objects whose keys start with `prefix`, sorted by key."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete the objects whose keys start with `prefix` (not empty); how many were deleted."""
        ...

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        """A presigned GET URL; None when the API must serve the object itself."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file holding the object on this machine; None when the store is remote."""
        ...


def open_store(config: StorageConfig, health: StorageHealth | None = None) -> ObjectStore:
    """The store a config describes; its failed attempts are counted in `health` when given."""
    if config.kind == "local":
        assert config.root is not None  # checked by StorageConfig
        return LocalStore(config.root, health=health)
    assert config.bucket is not None
    return S3Store(config.bucket, config.prefix, config.endpoint_url, config.region, health=health)


def verify_stored(store: ObjectStore, key: str, path: Path) -> StoredObject:
    """The object under `key`, checked to exist with as many bytes as `path`; StorageMismatch if not."""
    expected = path.stat().st_size
    # A listing of the key itself is one cheap call on either store (a HEAD-like LIST on S3).
    found = next((stored for stored in store.list(key) if stored.key == key), None)
    if found is None:
        raise StorageMismatch(f"{key}: not in storage right after it was stored")
    if found.size != expected:
        raise StorageMismatch(f"{key}: {found.size} bytes in storage, {expected} bytes were stored")
    return found


def output_key(job_id: str, filename: str) -> str:
    return f"jobs/{job_id}/outputs/{filename}"


def window_key(job_id: str, index: int) -> str:
    """Where a long video's window `index` (0-based) keeps its frames between attempts."""
    return f"{windows_prefix(job_id)}{index:04d}.npz"


def windows_prefix(job_id: str) -> str:
    # Beside jobs/, not under it: the controller's sweep lists only windows, never every output.
    return f"{WINDOWS_PREFIX}{job_id}/"


WINDOWS_PREFIX = "windows/"


def checkpoints_prefix(job_id: str) -> str:
    # Beside windows/: the controller sweeps those of ended jobs without listing outputs.
    return f"{CHECKPOINTS_PREFIX}{job_id}/"


CHECKPOINTS_PREFIX = "checkpoints/"


def input_key(job_id: str, filename: str) -> str:
    return f"jobs/{job_id}/inputs/{filename}"


def weights_prefix(model_id: str) -> str:
    return f"weights/{model_id}/"


class LocalStore:
    """Objects as files under `root`; the API streams them itself (no URLs).

    Reads and writes are retried with `backoff` on OSError (a folder briefly unwritable, a disk
    remounted); each failed attempt is counted in `health`.
    """

    def __init__(
        self, root: Path, backoff: Backoff | None = None, health: StorageHealth | None = None
    ) -> None:
        self.root = root
        self.backoff = backoff or Backoff()
        self.health = health or StorageHealth()

    @property
    def config(self) -> StorageConfig:
        return StorageConfig(kind="local", root=self.root)

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        # content_type is not kept: the API guesses it from the file name when it serves the file.
        # A reader sees the old file or the new one, never a half-copied one.
        target = self._path(key)

        def put() -> StoredObject:
            _atomic_write(target, lambda temp: shutil.copyfile(path, temp))
            return StoredObject(key, target.stat().st_size, None)

        return self.backoff.run(f"put {key}", put, self.health)

    def get_file(self, key: str, dest: Path) -> None:
        source = self._path(key)

        def get() -> None:
            if not source.is_file():
                raise ObjectMissing(key)  # a KeyError: an answer, not retried
            _atomic_write(dest, lambda temp: shutil.copyfile(source, temp))

        self.backoff.run(f"get {key}", get, self.health)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[StoredObject]:
        _check_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by the string prefix, which
        # need not end at a "/" (S3 semantics).
        folder = self.root.joinpath(*prefix.split("/")[:-1])
        if not folder.is_dir():
            return []
        found = []
        for path in folder.rglob("*"):
            if not path.is_file() or path.name.startswith(TEMP_PREFIX):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                found.append(StoredObject(key, path.stat().st_size, None))
        return sorted(found, key=lambda stored: stored.key)

    def delete_prefix(self, prefix: str) -> int:
        _refuse_everything(prefix)
        doomed = self.list(prefix)
        for stored in doomed:
            self._path(stored.key).unlink(missing_ok=True)
        return len(doomed)

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        return path

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root.joinpath(*key.split("/"))


class S3Store:
    """Objects in an S3 bucket under `prefix`; credentials come from the usual AWS chain.

    The boto3 client is made on first use and dropped when pickled: a store sent to a Ray actor
    travels as its settings and connects from the actor's process.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
        max_attempts: int = S3_MAX_ATTEMPTS,
        health: StorageHealth | None = None,
    ) -> None:
        if prefix:
            _check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.max_attempts = max_attempts
        self.health = health or StorageHealth()
        self._client: Any = None

    @property
    def config(self) -> StorageConfig:
        return StorageConfig(
            kind="s3",
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
        )

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_client": None}

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        # S3 PUT replaces an object under the same key, so a retried upload never duplicates.
        self._s3().upload_file(
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type},
            Config=self._transfer(),
        )
        head = self._s3().head_object(Bucket=self.bucket, Key=self._key(key))
        return StoredObject(key, head["ContentLength"], head["ETag"].strip('"'))

    def get_file(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        def download(temp: Path) -> None:
            self._s3().download_file(self.bucket, self._key(key), str(temp), Config=self._transfer())

        try:
            _atomic_write(dest, download)
        except ClientError as error:
            if _is_missing(error):
                raise ObjectMissing(key) from error
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3().head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _is_missing(error):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[StoredObject]:
        _check_prefix(prefix)
        found = []
        pages = (
            self._s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                found.append(StoredObject(key, item["Size"], item["ETag"].strip('"')))
        return sorted(found, key=lambda stored: stored.key)

    def delete_prefix(self, prefix: str) -> int:
        _refuse_everything(prefix)
        keys = [self._key(stored.key) for stored in self.list(prefix)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            self._s3().delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        return len(keys)

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        url: str = self._s3().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
        )
        return url

    def local_path(self, key: str) -> Path | None:
        return None

    def _key(self, key: str) -> str:
        _check_key(key)
        return self.prefix + key

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Path-style addressing: MinIO, Ceph and test servers behind an IP address do not
            # serve bucket-named hosts; AWS accepts both.
            style = "path" if self.endpoint_url else "auto"
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": style},
                    retries={"mode": S3_RETRY_MODE, "total_max_attempts": self.max_attempts},
                ),
            )
            # botocore asks this event after every attempt, whether it will retry or not.
            self._client.meta.events.register("needs-retry.s3", self._count_failed_attempt)
        return self._client

    def _count_failed_attempt(
        self, response: Any, caught_exception: BaseException | None, operation: Any, **_: Any
    ) -> None:
        where = f"S3 {operation.name}"
        if caught_exception is not None:
            self.health.record(where, caught_exception)
        elif response is not None:
            status = response[0].status_code
            if status >= 500 or status in S3_FAULT_STATUSES:
                code = response[1].get("Error", {}).get("Code", "")
                self.health.record(where, f"HTTP {status} {code}".strip())

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_chunksize
        )


class S3WeightMirror:
    """A WeightMirror over `weights/<model_id>/...` objects in any ObjectStore.

    A mirror counts only once its `.complete` marker exists; the marker, uploaded last, lists the
    files and their sizes, so a download takes exactly the set that was published.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def has(self, model_id: str) -> bool:
        return self.store.exists(weights_prefix(model_id) + COMPLETE)

    def download(self, model_id: str, dest: Path, without: Sequence[str] = ()) -> None:
        """Write the model's published files under `dest`, but for the `*.safetensors` of the
        subfolders in `without`; ObjectMissing when it is not published."""
        prefix = weights_prefix(model_id)
        with tempfile.TemporaryDirectory() as scratch:
            marker = Path(scratch) / "manifest.json"
            self.store.get_file(prefix + COMPLETE, marker)
            manifest = _Manifest.read(marker)
        for relative, size in manifest.files.items():
            folder, _, name = relative.rpartition("/")
            if folder in without and name.endswith(".safetensors"):
                continue
            target = dest.joinpath(*relative.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(prefix + relative, target)
            if target.stat().st_size != size:  # a re-publish overwrote it while we read
                raise OSError(f"{prefix + relative}: {target.stat().st_size} bytes, manifest says {size}")


def upload_weights(store: ObjectStore, model_id: str, folder: Path) -> list[StoredObject]:
    """Publish a cached model folder to the mirror; the `.complete` marker goes up last."""
    prefix = weights_prefix(model_id)
    # Withdraw any earlier publication first, so nobody downloads a half-replaced set.
    store.delete_prefix(prefix + COMPLETE)
    uploaded = []
    files: dict[str, int] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        # Dot entries are the cache's own marker and hub download metadata; from_pretrained
        # reads none of them.
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        key = relative.as_posix()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        uploaded.append(store.put_file(prefix + key, path, content_type))
        files[key] = path.stat().st_size
    with tempfile.TemporaryDirectory() as scratch:
        marker = Path(scratch) / "manifest.json"
        _Manifest(model_id, files).write(marker)
        uploaded.append(store.put_file(prefix + COMPLETE, marker, "application/json"))
    return uploaded


@dataclass(frozen=True)
class _Manifest:
    model_id: str
    files: dict[str, int]  # relative path -> bytes

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"model_id": self.model_id, "files": self.files}, sort_keys=True))

    @classmethod
    def read(cls, path: Path) -> _Manifest:
        data = json.loads(path.read_text())
        files = {str(name): int(size) for name, size in data["files"].items()}
        for name in files:
            _check_key(name)  # a hand-made marker must not write outside the cache folder
        return cls(str(data["model_id"]), files)


def _atomic_write(dest: Path, write: Callable[[Path], object]) -> None:
    """Run `write(temp)` on a temporary file beside `dest`, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dest.parent)
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid object key {key!r}: use relative 'a/b/c' paths without '..'")


def _check_prefix(prefix: str) -> None:
    # A prefix may end in "/" or part-way through a name; only what precedes the last "/" must
    # be whole key parts.
    if prefix:
        _check_key(prefix.removesuffix("/"))


def _refuse_everything(prefix: str) -> None:
    # An empty prefix would wipe the whole store (every job and the weight mirror): never wanted.
    if not prefix:
        raise ValueError("refusing to delete with an empty prefix")
    _check_prefix(prefix)


def _is_missing(error: Any) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")
