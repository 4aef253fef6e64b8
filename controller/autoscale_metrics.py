"""/metrics for autoscaling: demand per GPU class against its agents, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.autoscale import Autoscaler


class DemandCollector(Collector):
    """`wanfarm_class_gpus_wanted`, `wanfarm_class_jobs_waiting` and `wanfarm_class_agents{state}` per
    GPU class, as the last placement left them (controller.autoscale)."""

    def __init__(self, autoscaler: Callable[[], Autoscaler | None]) -> None:
        self.autoscaler = autoscaler

    def collect(self) -> Iterator[Metric]:
        autoscaler = self.autoscaler()
        demand = autoscaler.demand if autoscaler is not None else ()
        wanted = GaugeMetricFamily(
            "wanfarm_class_gpus_wanted",
            "GPUs of the class asked of the autoscaler: its busy agents plus the queued jobs asking it.",
            labels=["gpu_class"],
        )
        waiting = GaugeMetricFamily(
            "wanfarm_class_jobs_waiting",
            "Queued jobs asking the class for a GPU (no agent up now would finish them soon).",
            labels=["gpu_class"],
        )
        agents = GaugeMetricFamily(
            "wanfarm_class_agents", "Agents of the class up now.", labels=["gpu_class", "state"]
        )
        for row in demand:
            wanted.add_metric([row.gpu_class], row.wanted)
            waiting.add_metric([row.gpu_class], row.waiting)
            agents.add_metric([row.gpu_class, "busy"], row.busy)
            agents.add_metric([row.gpu_class, "idle"], row.idle)
        yield from (wanted, waiting, agents)
