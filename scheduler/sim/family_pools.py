"""The pools of the scenario family: consumer, datacenter or mixed farms of 4-120 GPUs.

Node kinds are drawn from tiers of the GPU table (old cards without bf16, 8-12 GB cards, 16 GB
ones, 24-32 GB ones, datacenter cards), each kind with its RAM, disk and link drawn from what such
machines have; `PoolDraw` says which features were asked for, the pool itself what they gave.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from scheduler.sim.formats import NodeSpec, PoolSpec, node_spec

T = TypeVar("T")
MIXES = (("consumer", 0.4), ("datacenter", 0.25), ("mixed", 0.35))
CONSUMER_TIERS = {
    "old": ("GTX 1060 6GB", "GTX 1070", "GTX 1080", "GTX 1080 Ti", "RTX 2060", "RTX 2070", "RTX 2080",
            "RTX 2080 Ti"),
    "small": ("RTX 3060", "RTX 3060 Ti", "RTX 3070", "RTX 3080", "RTX 3080 Ti", "RTX 4060", "RTX 4070",
              "RTX 4070 Ti", "RTX 5070"),
    "mid": ("RTX 4060 Ti 16GB", "RTX 4070 Ti Super", "RTX 4080", "RTX 4080 Super", "RTX 5060 Ti 16GB",
            "RTX 5070 Ti", "RTX 5080"),
    "big": ("RTX 3090", "RTX 3090 Ti", "RTX 4090", "RTX 5090"),
}  # fmt: skip
DATACENTER_TIERS = {
    "old": ("T4", "V100 16GB", "V100 32GB"),
    "mid": ("A10", "L4", "RTX A6000"),
    "big": ("A100 40GB", "A100 80GB", "L40S", "H100 PCIe", "H100 SXM"),
}
GPU_RANGE = {"consumer": (4, 48), "datacenter": (8, 120), "mixed": (8, 96)}  # drawn log-uniformly
LOW_RAM_GB = 16  # a node at or under this holds little of a big model's offloaded weights
SLOW_LINK_GBPS = 0.2  # 25 MB/s: a 30 GB model takes 20 minutes to download
SLOW_DISK_GBPS = 0.25  # a spinning disk
CONSUMER_RAM_GB = (32, 32, 64, 64, 128)
DATACENTER_RAM_GB = (256, 512, 1024)
CONSUMER_DISKS_GBPS = (0.5, 2.0, 3.0, 5.0)
DATACENTER_DISKS_GBPS = (2.0, 3.0, 5.0, 7.0)
CONSUMER_LINKS_GBPS = {True: (0.1, 0.2, 0.3, 0.5), False: (0.5, 1.0, 2.5)}  # by slow-links asked
DATACENTER_LINKS_GBPS = {True: (0.5, 1.0), False: (10.0, 25.0)}


@dataclass(frozen=True)
class PoolDraw:
    """The features a pool was asked to have; the traits are read off the pool it gave."""

    mix: str
    old_cards: bool
    low_ram: bool
    slow_links: bool
    slow_disks: bool


def draw_pool_features(rng: random.Random) -> PoolDraw:
    """Which mix and which hardware troubles the pool gets."""
    mix = _weighted(rng, MIXES)
    return PoolDraw(
        mix=mix,
        old_cards=rng.random() < (0.35 if mix == "datacenter" else 0.5),
        low_ram=mix != "datacenter" and rng.random() < 0.4,
        slow_links=rng.random() < 0.5,
        slow_disks=mix != "datacenter" and rng.random() < 0.3,
    )


def draw_pool(rng: random.Random, name: str, draw: PoolDraw) -> PoolSpec:
    """A pool of `draw.mix` with the troubles `draw` asks for, nothing cached yet."""
    low, high = GPU_RANGE[draw.mix]
    target = round(math.exp(rng.uniform(math.log(low), math.log(high))))
    if draw.mix == "consumer":
        nodes = _consumer_nodes(rng, draw, target, "pc")
    elif draw.mix == "datacenter":
        nodes = _datacenter_nodes(rng, draw, target, "dc")
    else:
        share = rng.uniform(0.3, 0.7)
        datacenter = max(4, round(target * share))
        nodes = _datacenter_nodes(rng, draw, datacenter, "dc") + _consumer_nodes(
            rng, draw, max(3, target - datacenter), "pc"
        )
    return PoolSpec(name, tuple(nodes))


def shrink_pool(pool: PoolSpec, factor: float, least_gpus: int) -> PoolSpec:
    """The pool with each kind's node count scaled by `factor` (at least one node of each kind),
    stopping at `least_gpus`: a pool too big for its jobs' count becomes a smaller one like it."""
    nodes = list(pool.nodes)
    for index, node in enumerate(nodes):
        count = max(1, math.floor(node.count * factor))
        nodes[index] = replace(node, count=count)
        if PoolSpec(pool.name, tuple(nodes)).gpu_count < least_gpus:
            nodes[index] = node
            break
    return PoolSpec(pool.name, tuple(nodes))


def with_cache(rng: random.Random, pool: PoolSpec, models: list[str], share: float) -> PoolSpec:
    """Each node kind caches each of `models` with probability `share` (0: a cold pool)."""
    nodes = tuple(
        replace(node, cached=frozenset(m for m in models if rng.random() < share)) for node in pool.nodes
    )
    return PoolSpec(pool.name, nodes)


def _consumer_nodes(rng: random.Random, draw: PoolDraw, gpus: int, prefix: str) -> list[NodeSpec]:
    # Small cards beside big ones always; old cards and 16 GB ones as drawn.
    tiers = ["small", "big"]
    extra = [("small", 0.35), ("mid", 0.25), ("big", 0.2), ("old", 0.2 if draw.old_cards else 0.0)]
    tiers += [_weighted(rng, extra) for _ in range(rng.randint(0, 4))]
    if draw.old_cards and "old" not in tiers:
        tiers.append("old")
    shares = [rng.uniform(0.5, 1.5) for _ in tiers]
    nodes = []
    for index, (tier, share) in enumerate(zip(tiers, shares, strict=True)):
        per_node = _weighted(rng, ((1, 0.7), (2, 0.25), (3, 0.05)))
        cards = (rng.choice(CONSUMER_TIERS[tier]),) * per_node
        count = max(1, round(gpus * share / sum(shares) / per_node))
        ram = rng.choice(CONSUMER_RAM_GB)
        if draw.low_ram and index == len(tiers) - 1:
            ram = LOW_RAM_GB
        disk = SLOW_DISK_GBPS if draw.slow_disks and index == 0 else rng.choice(CONSUMER_DISKS_GBPS)
        link = rng.choice(CONSUMER_LINKS_GBPS[draw.slow_links])
        size = rng.choice((500, 1000, 2000))
        nodes.append(node_spec(f"{prefix}{index}-{tier}", count, cards, ram, size, disk, link))
    return nodes


def _datacenter_nodes(rng: random.Random, draw: PoolDraw, gpus: int, prefix: str) -> list[NodeSpec]:
    tiers = ["big"] + [_weighted(rng, (("big", 0.6), ("mid", 0.4))) for _ in range(rng.randint(0, 2))]
    if draw.old_cards:
        tiers.append("old")
    shares = [rng.uniform(0.5, 1.5) for _ in tiers]
    nodes = []
    for index, (tier, share) in enumerate(zip(tiers, shares, strict=True)):
        per_node = rng.choice((4, 8))
        cards = (rng.choice(DATACENTER_TIERS[tier]),) * per_node
        count = max(1, round(gpus * share / sum(shares) / per_node))
        ram = rng.choice(DATACENTER_RAM_GB)
        disk = rng.choice(DATACENTER_DISKS_GBPS)
        link = rng.choice(DATACENTER_LINKS_GBPS[draw.slow_links])
        nodes.append(node_spec(f"{prefix}{index}-{tier}", count, cards, ram, 4000, disk, link))
    return nodes


def _weighted(rng: random.Random, choices: Sequence[tuple[T, float]]) -> T:
    total = sum(weight for _, weight in choices)
    point = rng.random() * total
    for value, weight in choices:
        point -= weight
        if point < 0:
            return value
    return choices[-1][0]
