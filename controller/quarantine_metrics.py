"""/metrics for quarantine: which agents get no new work, and why, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.quarantine import QuarantineBook
from gpu_agent.messages import AgentInventory

NOT_QUARANTINED = "none"


class QuarantineCollector(Collector):
    """`wanfarm_agent_quarantined{agent,node,kind}`: 1 while quarantined (kind: failures, lost,
    storage, slow; the reason's words are in /v1/agents, not in a label), 0 for every other agent."""

    def __init__(self, book: QuarantineBook, agents: Callable[[], list[AgentInventory]]) -> None:
        self.book = book
        self.agents = agents

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "wanfarm_agent_quarantined",
            "1 while the agent gets no new work (for `kind`), until a probe job or an admin releases it.",
            labels=["agent", "node", "kind"],
        )
        rows = self.book.rows()
        for inv in self.agents():
            if inv.agent_id not in rows:
                gauge.add_metric([inv.agent_id, inv.node_id, NOT_QUARANTINED], 0)
        # Quarantined agents gone from the pool (their node left) are still shown: still held.
        for row in rows.values():
            gauge.add_metric([row.agent_id, row.node_id, row.kind], 1)
        yield gauge
