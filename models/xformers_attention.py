"""xFormers through diffusers' own backend, with the fallback the farm's sage backends have.

diffusers' "xformers" backend calls `xformers.ops.memory_efficient_attention`, which raises when none
of its kernels takes the call (on tensor cores its CUTLASS kernel wants head sizes in multiples of 8;
FlashAttention 3 wants Hopper). `register` wraps that backend in the registry: such a call runs sdpa
instead, said once per reason and counted as sdpa, so a job forced to xformers is not lost to a
shape and still reports the kernel that ran (models.sage_attention does the same for SageAttention).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)
MODE = "xformers"


class XformersBackend:
    """diffusers' xformers backend, and sdpa for the calls it refuses. `calls` is the counter of the
    recording under way (models.attention.record_backends), None when none is."""

    def __init__(self, kernel: Callable[..., Any], sdpa: Callable[[], Callable[..., Any]]) -> None:
        self.kernel = kernel  # diffusers' own backend function
        self.sdpa = sdpa  # diffusers' native backend as the registry holds it at the call
        self.calls: Counter[str] | None = None
        self.refusals: set[str] = set()  # xFormers' reasons, each said once

    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
        return_lse: bool = False,
        _parallel_config: Any = None,
    ) -> Any:
        arguments = {
            "attn_mask": attn_mask, "dropout_p": dropout_p, "is_causal": is_causal, "scale": scale,
            "enable_gqa": enable_gqa, "return_lse": return_lse,
        }  # fmt: skip
        try:
            out = self.kernel(query, key, value, **arguments, _parallel_config=_parallel_config)
        except NotImplementedError as refused:  # "No operator found for memory_efficient_attention..."
            reason = str(refused).strip().splitlines()[0] if str(refused).strip() else "no operator"
            if reason not in self.refusals:
                self.refusals.add(reason)
                shape = list(query.shape)
                log.warning("xFormers refused a call (%s, %s): sdpa runs it: %s", shape, query.dtype, reason)
        else:
            if self.calls is not None:
                self.calls[MODE] += 1
            return out
        return self.sdpa()(query, key, value, **arguments)


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
