"""A job's own memory profile and attention kernel (WanGP's override_profile, override_attention).

Without them the farm picks both per agent; with them the job runs only where the forced profile
fits and the forced kernel runs, and it runs with them. `None` stands for a job that forces
neither, so the scheduler's hot loops test one identity instead of two fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.attention import AttentionMode, override_attention
from models.profiles import Profile, override_profile


@dataclass(frozen=True, slots=True)
class Overrides:
    """What a job forces; at least one of the two is set (a job that forces neither has None)."""

    profile: Profile | None = None
    attention: AttentionMode | None = None

    @staticmethod
    def of(profile: Profile | None, attention: AttentionMode | None) -> Overrides | None:
        """The record of what is forced; None when nothing is."""
        if profile is None and attention is None:
            return None
        return Overrides(profile, attention)


def stored_overrides(profile: object, attention: object) -> Overrides | None:
    """The overrides of settings stored after submit (override_profile, override_attention as
    written, None where absent): validated then, so a value here always reads."""
    return Overrides.of(
        override_profile(profile), override_attention(attention if isinstance(attention, str) else None)
    )
