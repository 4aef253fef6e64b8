"""xFormers through diffusers' own backend, with the fallback the farm's sage backends have.

diffusers' "xformers" backend calls `xformers.ops.memory_efficient_attention`, which raises when none
of its kernels takes the call (on tensor cores its CUTLASS kernel wants head sizes in multiples of 8;
FlashAttention 3 wants Hopper). `register` wraps that backend in the registry: such a call runs sdpa
instead, said once per reason and counted as sdpa, so a job forced to xformers is not lost to a
shape and still reports the kernel that ran (models.sage_attention does the same for SageAttention).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models.fallback_backend import AttentionCall, FallbackBackend

log = logging.getLogger(__name__)
MODE = "xformers"


class XformersBackend(FallbackBackend):
    """diffusers' xformers backend, and sdpa for the calls it refuses (models.fallback_backend)."""

    def __init__(self, kernel: Callable[..., Any], sdpa: Callable[[], Callable[..., Any]]) -> None:
        super().__init__(MODE, sdpa)
        self.kernel = kernel  # diffusers' own backend function
        self.refusals: set[str] = set()  # xFormers' reasons, each said once

    def attempt(self, call: AttentionCall) -> Any | None:
        try:
            return self.kernel(
                call.query, call.key, call.value, **call.arguments, _parallel_config=call.parallel_config
            )
        except NotImplementedError as refused:  # "No operator found for memory_efficient_attention..."
            reason = str(refused).strip().splitlines()[0] if str(refused).strip() else "no operator"
            if reason not in self.refusals:
                self.refusals.add(reason)
                shape = list(call.query.shape)
                log.warning(
                    "xFormers refused a call (%s, %s): sdpa runs it: %s", shape, call.query.dtype, reason
                )
            return None


def register() -> XformersBackend:
    """Wrap diffusers' xformers backend in the registry (once) and return the wrapper."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    name = AttentionBackendName.XFORMERS
    registry = _AttentionBackendRegistry._backends
    present = registry[name]
    if isinstance(present, XformersBackend):
        return present
    backend = XformersBackend(present, lambda: registry[AttentionBackendName.NATIVE])
    _AttentionBackendRegistry.register(name)(backend)
    return backend
