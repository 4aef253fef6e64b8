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
        # The pool's agents only: an agent whose node left stays held in the store (a node that comes
        # back under the same id is still held), but is no series to alert on.
        for inv in self.agents():
            row = rows.get(inv.agent_id)
            kind = row.kind if row is not None else NOT_QUARANTINED
            gauge.add_metric([inv.agent_id, inv.node_id, kind], 0 if row is None else 1)
        yield gauge
