"""A model's own attention kernel per card generation: the `attention` key of a WanGP definition.

WanGP's Qwen-Image and Z-Image Base definitions carry `"attention": {"<89": "sdpa"}`: below Ada
(compute capability 8.9) they run SDPA whatever kernel is chosen for the machine (wgp.py
get_overridden_attention, shared/match_archi.py at Wan2GP 8681e9f7). Keys are conditions on the
capability written as an integer (8.6 -> 86): an operator (<, <=, >, >=, = or none) and a number,
`&` joining conditions that must all hold, `+` joining alternatives; the first matching rule wins.
A kernel the card or the machine cannot run leaves the machine's kernel, as WanGP does. Pure: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from models.attention import WANGP_ONLY, AttentionMode

_CONDITION = re.compile(r"(>=|<=|>|<|=)?(\d+)")


def rules_problem(rules: object) -> str | None:
    """None when `rules` is a map of conditions to kernels the farm has, else why not, in words."""
    if not isinstance(rules, Mapping) or not rules:
        return "must map card conditions (e.g. '<89') to an attention kernel"
    for condition, kernel in rules.items():
        parts = [part for alternative in str(condition).split("+") for part in alternative.split("&")]
        if not isinstance(condition, str) or not all(_CONDITION.fullmatch(part.strip()) for part in parts):
            return f"{condition!r} is not a condition on the card's capability (e.g. '<89', '>=80&<90')"
        if kernel in WANGP_ONLY:
            return f"{kernel!r} is not supported by WanFarm yet: {WANGP_ONLY[kernel]} has no kernel here"
        if kernel not in {mode.value for mode in AttentionMode} or kernel == AttentionMode.AUTO:
            return f"{kernel!r} is not an attention kernel of WanGP's that the farm runs"
    return None


def model_kernel(rules: Mapping[str, str], capability: tuple[int, int] | None) -> AttentionMode | None:
    """The kernel `rules` impose on a card of `capability` (None: the CPU, where none applies)."""
    if capability is None:
        return None
    arch = capability[0] * 10 + capability[1]
    for condition, kernel in rules.items():
        if any(
            all(_holds(part, arch) for part in alternative.split("&"))
            for alternative in condition.split("+")
            if alternative.strip()
        ):
            return AttentionMode(kernel)
    return None


def _holds(condition: str, arch: int) -> bool:
    match = _CONDITION.fullmatch(condition.strip())
    if match is None:
        return False
    operator, number = match.group(1) or "=", int(match.group(2))
    return {
        "=": arch == number,
        "<": arch < number,
        "<=": arch <= number,
        ">": arch > number,
        ">=": arch >= number,
    }[operator]
