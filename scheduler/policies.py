"""The policy interface and the registry of policies by name.

A policy is built once from options (`get_policy("greedy", presets=...)`) and then called each
round with a snapshot; it returns decisions and never touches the cluster itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from scheduler.snapshot import Decisions, Observation, Snapshot


class Policy(Protocol):
    """Places pending jobs on agents: a pure function of the snapshot."""

    name: str

    def place(self, snapshot: Snapshot) -> Decisions: ...

    def observe(self, observation: Observation) -> None:
        """Learn from a finished job (a policy that does not learn ignores it)."""


PolicyFactory = Callable[..., Policy]
F = TypeVar("F", bound=PolicyFactory)

_REGISTRY: dict[str, PolicyFactory] = {}


def register(name: str) -> Callable[[F], F]:
    """Class or factory decorator: make a policy available to `get_policy(name)`."""

    def add(factory: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"policy {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def get_policy(name: str, **options: Any) -> Policy:
    """Build the named policy with `options`; an unknown name raises ValueError naming the known."""
    _load_builtin_policies()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown placement policy {name!r}; known: {', '.join(policy_names())}")
    return factory(**options)


def policy_names() -> list[str]:
    """Names of all registered policies, sorted."""
    _load_builtin_policies()
    return sorted(_REGISTRY)


def _load_builtin_policies() -> None:
    # Imported here, not at the top: the built-in policies import this module to register.
    import scheduler.baselines
    import scheduler.baselines.greedy
    import scheduler.wanfarm.policy  # noqa: F401
