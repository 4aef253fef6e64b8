"""A job's own memory profile and attention kernel (WanGP's override_profile, override_attention),
and the post-processors it needs that do not ship with WanFarm (processing.plugins).

Without them the farm picks both per agent; with them the job runs only where the forced profile
fits, the forced kernel runs and the plugins are installed, and it runs with them. `None` stands
for a job that forces none, so the scheduler's hot loops test one identity instead of three fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.attention import AttentionMode, override_attention
from models.profiles import Profile, override_profile


@dataclass(frozen=True, slots=True)
class Overrides:
    """What a job forces; at least one of the three is set (a job that forces none has None)."""

    profile: Profile | None = None
    attention: AttentionMode | None = None
    plugins: frozenset[str] = frozenset()  # post-processors an agent must have installed

    @staticmethod
    def of(
        profile: Profile | None, attention: AttentionMode | None, plugins: frozenset[str] = frozenset()
    ) -> Overrides | None:
        """The record of what is forced; None when nothing is."""
        if profile is None and attention is None and not plugins:
            return None
        return Overrides(profile, attention, frozenset(plugins))


def with_plugins(forced: Overrides | None, plugins: frozenset[str]) -> Overrides | None:
    """`forced` with the post-processors `plugins` required as well."""
    if forced is None:
        return Overrides.of(None, None, plugins)
    return Overrides.of(forced.profile, forced.attention, forced.plugins | plugins)


def stored_overrides(profile: object, attention: object, plugins: object = None) -> Overrides | None:
    """The overrides of settings stored after submit (override_profile, override_attention as
    written, None where absent; the plugins as a JSON list): validated then, so a value here
    always reads."""
    needed = frozenset(str(name) for name in plugins) if isinstance(plugins, list) else frozenset()
    return Overrides.of(
        override_profile(profile),
        override_attention(attention if isinstance(attention, str) else None),
        needed,
    )
