"""A long video's windows left in object storage (`windows/<job id>/`) by a job that ended without
stitching them: canceled or failed between windows. The last window's attempt deletes them on
success; these are swept with the uploads once no queued or running job owns them."""

from __future__ import annotations

from controller.store import JobStore
from controller.uploads import active_jobs
from gpu_agent.storage import WINDOWS_PREFIX, ObjectStore, windows_prefix


def sweep_windows(storage: ObjectStore, store: JobStore) -> list[str]:
    """Delete the windows of every job that is no longer queued or running; the prefixes deleted."""
    owners = {
        stored.key.removeprefix(WINDOWS_PREFIX).split("/", 1)[0] for stored in storage.list(WINDOWS_PREFIX)
    }
    # Read after listing: a job's windows are written only while it runs, so one listed above and
    # active now is kept, and one that ended since it was listed is swept.
    doomed = sorted(windows_prefix(job_id) for job_id in owners - {job.id for job in active_jobs(store)})
    for prefix in doomed:
        storage.delete_prefix(prefix)
    return doomed
