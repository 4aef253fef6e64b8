"""SageAttention through the farm's own backend, whatever version diffusers would accept.

diffusers dispatches to SageAttention only from 2.1.1, a build from source; the package index holds
1.0.6 (Triton kernels, sm70 and later), which WanGP calls itself. So does the farm: `register` puts
a `SageBackend` in diffusers' backend registry under its "sage" name (SageAttention's `sageattn`,
which picks its best kernel for the card) and SageAttention 2's "_sage_qk_int8_pv_fp16_cuda" name
(`sageattn_qk_int8_pv_fp16_cuda`), and `allowed` lets a transformer point at them. A call the kernel
cannot take (a mask, dropout, grouped heads, fp32, a head size it has no kernel for, a tensor off
its device), and every call once the kernel has raised, runs sdpa instead, and is counted as sdpa:
a job reports the kernel that ran.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from models.fallback_backend import AttentionCall, FallbackBackend

log = logging.getLogger(__name__)

# The kernel of each mode, by its name in the `sageattention` package.
KERNELS = {"sage": "sageattn", "sage2": "sageattn_qk_int8_pv_fp16_cuda"}
# diffusers' registry names of the modes (models.attention.BACKENDS).
REGISTRY_NAMES = {"sage": "sage", "sage2": "_sage_qk_int8_pv_fp16_cuda"}
HEAD_DIMS = frozenset({64, 128})  # what SageAttention 1.0.6 and 2 both have kernels for
DTYPES = frozenset({torch.float16, torch.bfloat16})


def kernel(mode: str) -> Callable[..., torch.Tensor] | None:
    """The installed SageAttention function of `mode` ("sage", "sage2"); None when it does not import
    (no package, no triton, no CUDA build)."""
    try:
        module = importlib.import_module("sageattention")
    except Exception:  # a kernel package that fails to import is absent
        return None
    found = getattr(module, KERNELS[mode], None)
    return found if callable(found) else None


class SageBackend(FallbackBackend):
    """One mode's backend in diffusers' registry (models.fallback_backend)."""

    def __init__(
        self, mode: str, sage: Callable[..., torch.Tensor], sdpa: Callable[[], Callable[..., Any]]
    ) -> None:
        super().__init__(mode, sdpa)
        self.sage = sage
        self.device_type = "cuda"  # SageAttention's kernels run on CUDA only
        self.broken: str | None = None  # why the kernel failed once: from then on sdpa runs

    def attempt(self, call: AttentionCall) -> torch.Tensor | None:
        given = call.arguments
        if self.broken is not None or not self.takes(
            call.query, call.key, call.value, given["attn_mask"], given["dropout_p"], given["return_lse"]
        ):
            return None
        try:
            return self.sage(
                call.query, call.key, call.value, tensor_layout="NHD", is_causal=given["is_causal"],
                sm_scale=given["scale"],
            )  # fmt: skip
        except torch.cuda.OutOfMemoryError:
            raise  # the job's memory, not the kernel: sdpa would need as much
        except (RuntimeError, ValueError, TypeError) as error:
            # A kernel that fails here fails for every call like it: said once, then sdpa runs,
            # counted as sdpa, rather than every job failing.
            self.broken = f"{type(error).__name__}: {error}"
            log.warning("SageAttention (%s) failed, sdpa runs instead: %s", self.mode, self.broken)
            return None

    def takes(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        dropout_p: float,
        return_lse: bool,
    ) -> bool:
        """Whether the kernel can take the call as it is."""
        return (
            attn_mask is None
            and dropout_p == 0.0
            and not return_lse
            and query.device.type == self.device_type
            and query.dtype in DTYPES
            and key.dtype == query.dtype == value.dtype
            and query.shape[-1] in HEAD_DIMS
            and value.shape[-1] == query.shape[-1]
            and key.shape[2] == query.shape[2] == value.shape[2]  # as many key heads as query heads
        )


def register(mode: str) -> SageBackend | None:
    """Put the backend of `mode` in diffusers' registry (once); None when its kernel is not installed."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    name = AttentionBackendName(REGISTRY_NAMES[mode])
    present = _AttentionBackendRegistry._backends.get(name)
    if isinstance(present, SageBackend):
        return present
    sage = kernel(mode)
    if sage is None:
        return None
    registry = _AttentionBackendRegistry._backends
    backend = SageBackend(mode, sage, lambda: registry[AttentionBackendName.NATIVE])
    _AttentionBackendRegistry.register(name)(backend)
    return backend


@contextmanager
def allowed() -> Iterator[None]:
    """While it runs, diffusers lets a model point at its sage backends (it checks the installed
    version against its own minimum when a backend is set; the farm's backend needs none)."""
    from diffusers.models import attention_dispatch

    before = attention_dispatch._CAN_USE_SAGE_ATTN
    attention_dispatch._CAN_USE_SAGE_ATTN = True
    try:
        yield
    finally:
        attention_dispatch._CAN_USE_SAGE_ATTN = before
