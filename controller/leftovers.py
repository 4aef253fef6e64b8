"""What jobs leave in object storage while they run, swept once no queued or running job owns it: a
long video's windows (`windows/<job id>/`) and denoising checkpoints (`checkpoints/<job id>/`) of a
job that ended without deleting them (canceled, failed, or its last agent lost before it could).
A successful attempt deletes its own; these are swept with the uploads."""

from __future__ import annotations

from controller.store import JobStore
from controller.uploads import active_jobs
from gpu_agent.storage import CHECKPOINTS_PREFIX, WINDOWS_PREFIX, ObjectStore

PREFIXES = (WINDOWS_PREFIX, CHECKPOINTS_PREFIX)  # each holds one folder per job id


def sweep_leftovers(storage: ObjectStore, store: JobStore) -> list[str]:
    """Delete the windows and checkpoints of every job that is no longer queued or running; the
    prefixes deleted."""
    owned = {
        (prefix, stored.key.removeprefix(prefix).split("/", 1)[0])
        for prefix in PREFIXES
        for stored in storage.list(prefix)
    }
    # Read after listing: a job's windows and checkpoints are written only while it runs, so one
    # listed above and active now is kept, and one that ended since it was listed is swept.
    active = {job.id for job in active_jobs(store)}
    doomed = sorted(f"{prefix}{job_id}/" for prefix, job_id in owned if job_id not in active)
    for prefix in doomed:
        storage.delete_prefix(prefix)
    return doomed
