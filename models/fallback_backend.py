"""The farm's own attention backends in diffusers' registry: a kernel tried first, sdpa for a call it
cannot take, each call counted as the kernel that ran (models.sage_attention, models.xformers_attention;
models.attention.record_backends hands them its counter)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AttentionCall:
    """One call of a backend: diffusers' keyword arguments in `arguments`, but its parallel config."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    arguments: dict[str, Any]
    parallel_config: Any


class FallbackBackend:
    """Called as diffusers calls a backend, with query, key and value as [batch, sequence, heads,
    head_dim]. `attempt` runs the kernel, or returns None for sdpa to run the call; `calls` is the
    counter of the recording under way, None when none is."""

    def __init__(self, mode: str, sdpa: Callable[[], Callable[..., Any]]) -> None:
        self.mode = mode
        # diffusers' native backend as the registry holds it at the call (counted while recording).
        self.sdpa = sdpa
        self.calls: Counter[str] | None = None

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
        out = self.attempt(AttentionCall(query, key, value, arguments, _parallel_config))
        if out is None:
            return self.sdpa()(query, key, value, **arguments)
        if self.calls is not None:
            self.calls[self.mode] += 1
        return out

    def attempt(self, call: AttentionCall) -> Any | None:
        """The kernel's output, or None where it cannot take the call."""
        raise NotImplementedError
