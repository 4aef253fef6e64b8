"""WanGP's memory profiles: how much of a model lives in VRAM and RAM, traded against speed.

The seven profiles are WanGP's (1, 2, 3, 3+, 4, 4+, 5). Each maps onto one of mmgp's five base
profiles plus the overrides WanGP applies for the "+" variants; the fields below are what the
memory estimator and the pipeline loader both read, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MIB = 1024**2


class Profile(StrEnum):
    P1 = "1"
    P2 = "2"
    P3 = "3"
    P3_PLUS = "3+"
    P4 = "4"
    P4_PLUS = "4+"
    P5 = "5"

    @classmethod
    def parse(cls, value: str | int | float) -> Profile:
        """Accept WanGP's spellings: 1..5, "3+"/"4+", and its numeric 3.5/4.5."""
        text = str(value).strip()
        text = {"3.5": "3+", "4.5": "4+"}.get(text, text)
        text = text.removesuffix(".0")
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown memory profile {value!r}; allowed: {allowed}") from None

    @property
    def spec(self) -> ProfileSpec:
        return PROFILE_SPECS[self]


@dataclass(frozen=True)
class ProfileSpec:
    """What a profile asks of mmgp (and so of the card and the node)."""

    mmgp_profile: int  # mmgp.profile_type value
    # Every weight is held in pinned (reserved) RAM for fast transfers; mmgp reserves extra for it.
    pin_all: bool
    pin_transformer: bool
    # The transformer (and T5/LLM text encoders) quantized to int8 on load.
    quantize: bool
    # None: each model moves to VRAM whole while it runs. Else the most MiB of a model kept in VRAM
    # at once; async transfers double it (the next slice loads while this one runs).
    transformer_budget_mib: int | None
    other_budget_mib: int | None
    async_transfers: bool
    summary: str


PROFILE_SPECS: dict[Profile, ProfileSpec] = {
    Profile.P1: ProfileSpec(1, True, True, False, None, None, True, "HighRAM_HighVRAM: fastest"),
    Profile.P2: ProfileSpec(2, True, True, False, 1200, 3000, True, "HighRAM_LowVRAM"),
    Profile.P3: ProfileSpec(3, False, True, True, None, None, True, "LowRAM_HighVRAM, int8"),
    Profile.P3_PLUS: ProfileSpec(3, False, False, True, None, None, True, "3 without reserved RAM"),
    Profile.P4: ProfileSpec(4, False, True, True, 1200, 3000, True, "LowRAM_LowVRAM, int8"),
    Profile.P4_PLUS: ProfileSpec(4, False, True, True, 1200, 3000, False, "4 with sync transfers"),
    Profile.P5: ProfileSpec(5, False, False, True, 400, 1000, True, "VerylowRAM_LowVRAM: fail safe"),
}


# From fastest to slowest, as WanGP ranks them: whole models in VRAM first (1, then int8 3/3+),
# then sliced loading with pinned RAM (2), then the low-VRAM profiles.
SPEED_ORDER = (
    Profile.P1,
    Profile.P3,
    Profile.P3_PLUS,
    Profile.P2,
    Profile.P4,
    Profile.P4_PLUS,
    Profile.P5,
)


# WanGP's override_profile: -1 (its default) keeps the profile the farm picks per agent; any other
# value is one of its memory-profile menu's numbers, 3.5 and 4.5 standing for 3+ and 4+.
NO_OVERRIDE = (-1, "-1", "")
WANGP_PROFILE_VALUES = "-1 (the farm's choice per agent), 1, 2, 3, 3.5 (3+), 4, 4.5 (4+) or 5"


def override_profile(value: object) -> Profile | None:
    """WanGP's override_profile as the profile it forces; None when it forces none (-1). ValueError
    names a value that is not one of WanGP's profiles."""
    if value is None or (not isinstance(value, bool) and value in NO_OVERRIDE):
        return None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return Profile.parse(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a memory profile of WanGP's; accepted: {WANGP_PROFILE_VALUES}")
