"""What a simulation run measured, per policy: latency, throughput, waste, ETA honesty, fairness."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PolicyReport:
    """The figures of one policy over one pool and trace; times in seconds, sizes in bytes."""

    policy: str
    jobs: int  # submitted
    completed: int
    failed: int  # gave up after MAX_ATTEMPTS failed attempts
    unfinished: int  # still pending when nothing more could happen (no agent would take them)
    mean_latency_s: float  # submit to done, completed jobs
    p50_latency_s: float
    p95_latency_s: float
    p99_latency_s: float
    makespan_s: float  # first submit to last completion
    gpu_busy_share: float  # attempt time (loads included) / (agents x makespan)
    cold_loads: int  # attempts that found their model not hot on the agent
    downloads: int
    bytes_downloaded: int
    oom_failures: int
    eta_error: float | None  # median |policy's est_finish - true finish| / true duration; None: no job
    # Median |ETA at submit - finish| / (finish - submit) over the jobs of a model that had finished
    # at least once before they were submitted (ETA at submit: the first place() after the arrival).
    submit_eta_error: float | None
    submit_eta_jobs: int  # jobs that median is over
    owner_gpu_seconds: dict[str, float]
    owner_share: dict[str, float]
    jain_fairness: float | None  # over owners' GPU-seconds, 1 = equal; None: fewer than two owners
    invalid_decisions: int  # assignments or prefetches the engine refused
    place_calls: int
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        row = {k: v for k, v in self.__dict__.items() if k not in ("policy", "extra")}
        row.update(self.extra)
        return {k: _rounded(v) for k, v in row.items()}


@dataclass(frozen=True)
class SimResult:
    report: PolicyReport
    simulated_s: float  # the clock at the end
    wall_s: float  # real seconds the run took (not deterministic; kept out of JSON)
    policy_wall_s: float  # of which in policy.place


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all equal, 1/n when one has all. None
    when there is nothing to compare (fewer than two values, or none above 0): not a perfect score."""
    square_sum = sum(v * v for v in values)
    if len(values) < 2 or square_sum == 0:
        return None
    return sum(values) ** 2 / (len(values) * square_sum)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, interpolated linearly; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    """The median; None for no values (no data is not a perfect score)."""
    return percentile(sorted(values), 50) if values else None


def _rounded(value: object) -> object:
    # Six significant figures keep the JSON short and stable across platforms' last-bit noise.
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in sorted(value.items())}
    return value
