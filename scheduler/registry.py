"""Placement policies by name: the built-in ones, and any registered from outside the package.

A policy is built once from options (`get_policy("greedy", presets=...)`) and then called each
round with a snapshot. The registry imports the policies; they import only the interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from scheduler.baselines.affinity import AffinityPolicy
from scheduler.baselines.fifo import FifoPolicy
from scheduler.baselines.greedy import GreedyPolicy
from scheduler.baselines.horde import HordePolicy
from scheduler.baselines.locality import LocalityPolicy
from scheduler.policy import Policy
from scheduler.wanfarm.policy import FrugalWanfarmPolicy, SteadyWanfarmPolicy, WanfarmPolicy

PolicyFactory = Callable[..., Policy]
F = TypeVar("F", bound=PolicyFactory)

_BUILT_IN: tuple[type[Policy], ...] = (
    WanfarmPolicy,
    FrugalWanfarmPolicy,
    SteadyWanfarmPolicy,
    GreedyPolicy,
    FifoPolicy,
    AffinityPolicy,
    HordePolicy,
    LocalityPolicy,
)
_REGISTRY: dict[str, PolicyFactory] = {policy.name: policy for policy in _BUILT_IN}


def register(name: str) -> Callable[[F], F]:
    """Class or factory decorator: make a policy defined elsewhere available to `get_policy(name)`."""

    def add(factory: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"policy {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def get_policy(name: str, **options: Any) -> Policy:
    """Build the named policy with `options`; an unknown name raises ValueError naming the known."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown placement policy {name!r}; known: {', '.join(policy_names())}")
    return factory(**options)


def policy_names() -> list[str]:
    """Names of all registered policies, sorted."""
    return sorted(_REGISTRY)
