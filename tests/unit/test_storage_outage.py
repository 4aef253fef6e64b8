"""An attempt waits out an object-storage outage instead of failing: what counts as one, and the
wait for the store to answer again, over moto's real S3 server stopped and started on its port."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from gpu_agent.storage import LocalStore, S3Store, StorageError, StorageMismatch
from gpu_agent.storage_outage import answers_now, is_outage, wait_for_storage
from tests.chaos.services import S3Service
from tests.unit.test_storage import throwaway_credentials


def test_an_unreachable_or_failing_store_is_an_outage_and_a_wrong_answer_or_a_full_disk_is_not() -> None:
    assert is_outage(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_outage(StorageError("put jobs/a failed 6 times in 10.0 s"))
    assert is_outage(_slow_down(503)) and not is_outage(_slow_down(403))
    try:
        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        except EndpointConnectionError as error:
            raise RuntimeError("checkpoint read failed") from error
    except RuntimeError as wrapped:
        assert is_outage(wrapped)  # raised from an outage
    assert not is_outage(StorageMismatch("jobs/a: 10 bytes stored, 20 written"))
    assert not is_outage(OSError(errno.ENOSPC, "No space left on device"))


def test_the_wait_ends_when_the_store_answers_again_with_its_data(tmp_path: Path) -> None:
    with throwaway_credentials():
        s3 = S3Service(_free_port())
        s3.start()
        try:
            s3.client().create_bucket(Bucket="outage")  # type: ignore[attr-defined]
            store = S3Store(
                "outage", prefix="farm/", endpoint_url=s3.endpoint, region="us-east-1", max_attempts=1
            )
            kept = tmp_path / "x.png"
            kept.write_bytes(b"kept")
            store.put_file("jobs/a/outputs/x.png", kept, "image/png")
            s3.stop()
            with pytest.raises(Exception) as down:
                store.exists("jobs/a/outputs/x.png")
            assert is_outage(down.value)
            assert not answers_now(store)
            assert not wait_for_storage(store, 0.5, sleep=lambda _: time.sleep(0.1))
            threading.Timer(1.0, s3.start).start()  # back in a second, on the same port
            started = time.monotonic()
            assert wait_for_storage(store, 30, sleep=lambda _: time.sleep(0.2))
            assert time.monotonic() - started < 20
            assert store.exists("jobs/a/outputs/x.png")  # the outage lost nothing
        finally:
            s3.stop()


def test_a_refused_connection_while_the_store_answers_is_not_its_outage(tmp_path: Path) -> None:
    # A hub refusing a weight download raises ConnectionRefusedError like a store that is down: the
    # store answering says it was not an outage, and the attempt fails at once instead of retrying.
    store = LocalStore(tmp_path / "objects")
    assert is_outage(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert answers_now(store)


def _slow_down(status: int) -> ClientError:
    return ClientError({"Error": {"Code": "X"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
