"""The pool index the wanfarm policy places against: heap tops stay right as agents are reserved,
and an index kept across rounds decides exactly as one built afresh each round."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from pathlib import Path

from scheduler.sim.engine import simulate
from scheduler.sim.formats import load_pool
from scheduler.sim.generator import generate_trace
from scheduler.snapshot import AgentView, Decisions, Snapshot
from scheduler.wanfarm.policy import WanfarmPolicy
from scheduler.wanfarm.pool_index import KeptPoolIndex, PoolIndex
from tests.declared_agents import declared_agent

MODELS = ("wan2.1-t2v-1.3b", "flux.1-dev", "wan2.1-t2v-14b", "qwen-image")


def _random_agents(rng: random.Random, count: int) -> tuple[AgentView, ...]:
    agents = []
    for i in range(count):
        busy = rng.random() < 0.5
        view = declared_agent(
            rng.choice(("RTX 4090", "RTX 3060", "A100 80GB")),
            f"a{i:02d}",
            hot_model=rng.choice((None, *MODELS)),
            cached_models=frozenset(rng.sample(MODELS, rng.randint(0, 3))),
            busy_until=100.0 + rng.uniform(0, 500) if busy else None,
        )
        agents.append(dataclasses.replace(view, node_id=f"n{i // 3}"))  # three agents a node
    return tuple(agents)


def _expected_top(pool: PoolIndex, members: list[int]) -> int:
    if not members:
        return -1
    return min(members, key=lambda i: (pool.key[i], pool.cold_s_per_byte[i], i))


def test_heap_tops_are_the_earliest_agents_after_every_reservation() -> None:
    rng = random.Random(5)
    for _ in range(20):
        pool = PoolIndex(_random_agents(rng, 12), now=100.0)
        for _ in range(30):
            index = rng.randrange(len(pool.agents))  # a reservation ends after the agent frees
            pool.reserve(index, pool.free_at[index] + rng.uniform(1, 900), rng.choice(MODELS))
            everyone = list(range(len(pool.agents)))
            assert pool.top(pool.everyone) == _expected_top(pool, everyone)
            for number, heap in enumerate(pool.by_class):
                members = [i for i in everyone if pool.class_of[i] == number]
                assert pool.top(heap) == _expected_top(pool, members)
            for model in MODELS:
                for number in range(len(pool.classes)):
                    in_class = [i for i in everyone if pool.class_of[i] == number]
                    hot = [i for i in in_class if pool.hot[i] == model]
                    hot_heap = pool.hot_heaps.get(model, {}).get(number)
                    assert pool.top(hot_heap, model, True) == _expected_top(pool, hot)
                    cached = [i for i in in_class if model in pool.cached[i]]
                    cached_heap = pool.cached_heaps.get(model, {}).get(number)
                    assert pool.top(cached_heap, model, False) == _expected_top(pool, cached)


class _FreshEachRound(WanfarmPolicy):
    """The wanfarm policy, also deciding each round with a pool index built from scratch."""

    mismatches = 0
    rounds = 0
    updated_in_place = 0

    def place(self, snapshot: Snapshot) -> Decisions:
        twin = copy.deepcopy(self)
        twin.kept_pool = KeptPoolIndex()  # empty: builds PoolIndex(agents, now) afresh
        fresh = WanfarmPolicy.place(twin, snapshot)
        base = self.kept_pool._base
        kept = super().place(snapshot)
        self.updated_in_place += base is not None and self.kept_pool._base is base
        self.rounds += 1
        self.mismatches += fresh != kept
        return kept


def test_an_index_kept_across_rounds_decides_as_one_built_afresh(tmp_path: Path) -> None:
    # Many multi-GPU nodes, so that a round's changes touch few nodes and KeptPoolIndex updates the index
    # in place (it rebuilds when over a quarter of the nodes changed).
    spec = {
        "nodes": [
            {"name": "big", "count": 6, "gpus": ["RTX 4090", "RTX 4090", "RTX 3090"], "ram_gb": 128,
             "disk_gb": 2000, "disk_gbps": 3.0, "net_gbps": 1.0, "cached": ["wan2.1-t2v-1.3b"]},
            {"name": "small", "count": 8, "gpus": ["RTX 3060", "RTX 4070"], "ram_gb": 64,
             "disk_gb": 1000, "disk_gbps": 1.0, "net_gbps": 0.5, "cached": ["flux.1-schnell"]},
        ]
    }  # fmt: skip
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(spec))
    pool = load_pool(path)
    trace = generate_trace(pool, hours=1.0, load=0.9, seed=3)
    policy = _FreshEachRound()
    simulate(pool, trace, policy)
    assert policy.rounds > 50 and policy.updated_in_place > 20
    assert policy.mismatches == 0
