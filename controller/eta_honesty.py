"""How honest the ETA given at submit was, measured as each job succeeds, for /metrics.

The error of a job is |its submit ETA - when it finished| / (when it finished - when it was
submitted): relative to its latency, so a minute off on a minute's wait counts as much as an hour off
on an hour's. A job counts as of a seen model when this controller had finished a job of its model
before it was submitted: the speeds its ETA came from were then learned, not guessed.
"""

from __future__ import annotations

from prometheus_client import Histogram

from controller.jobs import JobRecord, JobState


class EtaHonesty:
    """Finished jobs' submit-ETA errors into `histogram` (labels: model, model_seen)."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._first_done: dict[str, float] = {}  # model -> when a job of it first succeeded here

    def finished(self, job: JobRecord) -> float | None:
        """Record a job that reached a final state; its error, or None when it has none to measure
        (it did not succeed, was never given an ETA, or took no time)."""
        if job.state is not JobState.SUCCEEDED or job.finished_at is None:
            return None
        first = self._first_done.setdefault(job.model_id, job.finished_at)
        latency = job.finished_at - job.created_at
        if job.submit_eta is None or latency <= 0:
            return None
        error = eta_error(job.submit_eta, job.created_at, job.finished_at)
        seen = first < job.created_at
        self.histogram.labels(job.model_id, "true" if seen else "false").observe(error)
        return error


def eta_error(submit_eta: float, submitted_at: float, finished_at: float) -> float:
    """|the ETA at submit - the finish| / the latency; the latency must be positive."""
    return abs(submit_eta - finished_at) / (finished_at - submitted_at)
