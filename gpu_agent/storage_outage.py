"""Object storage that does not answer at all (an outage) is neither the job's fault nor the agent's:
an attempt that fails on it waits until the store answers again, then renders again, instead of
failing (found by the chaos suite: an S3 outage of 18-24 s, longer than the store's own retries,
failed jobs for real on two agents in a row). Other storage errors (a wrong size, a refusal) fail as
before."""

from __future__ import annotations

import time
from collections.abc import Callable

from gpu_agent.storage import ObjectStore, StorageError

# How long an attempt waits for storage to come back, and how often it asks meanwhile.
OUTAGE_WAIT_S = 300.0
PROBE_EVERY_S = 5.0
PROBE_KEY = "jobs/.storage-probe"  # never written: asking whether it exists is one HEAD


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the store was unreachable or failing
    on its side (connection refused or cut, timed out, 5xx after the retries)."""
    from botocore.exceptions import ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, StorageError | BotoConnectionError | ConnectionError):
            return True
        if isinstance(seen, ClientError):
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return isinstance(status, int) and status >= 500
        seen = seen.__cause__ or seen.__context__
    return False


def answers_now(store: ObjectStore) -> bool:
    """Whether the store answers one question now. An error that looks like an outage while the
    store answers was not its outage (a hub refusing a weight download raises ConnectionError too):
    it fails the attempt at once instead of being tried again for OUTAGE_WAIT_S."""
    try:
        store.exists(PROBE_KEY)
    except Exception as error:
        return not is_outage(error)
    return True


def wait_for_storage(
    store: ObjectStore,
    wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Ask the store until it answers (True) or `wait_s` has passed (False)."""
    deadline = clock() + wait_s
    while True:
        try:
            store.exists(PROBE_KEY)
            return True
        except Exception as error:
            if not is_outage(error):
                return True  # it answers, if not as hoped: no longer an outage
        if clock() >= deadline:
            return False
        sleep(PROBE_EVERY_S)
