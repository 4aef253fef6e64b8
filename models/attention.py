"""Attention kernels: which are installed, which the card allows, and which one really ran.

"auto" picks as WanGP does: sage2, then sage, then sdpa (flash and xformers only when asked). Each
mode maps to a diffusers attention backend (the sage modes to the farm's own, models.sage_attention,
which calls the installed SageAttention whatever version diffusers would accept; xformers to
diffusers' own, wrapped by models.xformers_attention); a counter around diffusers' backend registry
records the backends that were called, so a job reports the kernel that ran, not the one asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.gpus import ArchCaps  # annotations only: `--help` loads no pydantic


class AttentionMode(StrEnum):
    AUTO = "auto"
    SDPA = "sdpa"
    SAGE = "sage"
    SAGE2 = "sage2"
    FLASH = "flash"
    XFORMERS = "xformers"


class AttentionUnavailable(ValueError):
    """An attention mode that is not installed or that the GPU does not allow."""


BACKENDS = {
    AttentionMode.SDPA: "native",
    AttentionMode.SAGE: "sage",
    AttentionMode.SAGE2: "_sage_qk_int8_pv_fp16_cuda",
    AttentionMode.FLASH: "flash",
    AttentionMode.XFORMERS: "xformers",
}
MODE_OF_BACKEND = {backend: mode for mode, backend in BACKENDS.items()}
AUTO_ORDER = (AttentionMode.SAGE2, AttentionMode.SAGE, AttentionMode.SDPA)
# WanGP's override_attention: "" keeps the kernel the farm picks per agent; its names that are the
# farm's modes force that mode ("auto" too: the best the agent has, whatever the farm was told).
# WanGP's other kernels have no diffusers backend here.
WANGP_ONLY = {
    "sage3": "SageAttention 3 (Blackwell)",
    "radial": "radial sparse attention",
    "sol": "Sol sparse attention",
}


def override_attention(value: str | None) -> AttentionMode | None:
    """WanGP's override_attention as the mode it forces; None when it forces none (""). ValueError
    names a kernel the farm has no equivalent of, or a name WanGP does not know."""
    if not value:
        return None
    accepted = "'' (the farm's choice per agent), " + ", ".join(mode.value for mode in AttentionMode)
    if value in WANGP_ONLY:
        raise ValueError(
            f"{value!r} is not supported by WanFarm yet: {WANGP_ONLY[value]} has no kernel here; "
            f"accepted: {accepted}"
        )
    try:
        return AttentionMode(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an attention mode of WanGP's; accepted: {accepted}") from None


def installed_modes() -> set[AttentionMode]:
    """Modes whose kernels import here (sage: SageAttention's `sageattn`, any version, which needs
    triton; sage2: SageAttention 2's CUDA ops) and, for flash and xformers, that diffusers will
    dispatch to (it refuses flash-attn below 2.6.3, xFormers below 0.0.29)."""
    modes = {AttentionMode.SDPA}
    if _imports("sageattention", "sageattn"):
        modes.add(AttentionMode.SAGE)
        if _imports("sageattention", "sageattn_qk_int8_pv_fp16_cuda"):
            modes.add(AttentionMode.SAGE2)
    if _imports("flash_attn", "flash_attn_func") and _diffusers_allows("_CAN_USE_FLASH_ATTN"):
        modes.add(AttentionMode.FLASH)
    # xFormers 0.0.35's kernels are built on torch's stable C ABI: one wheel for every torch >= 2.10.
    if _imports("xformers.ops", "memory_efficient_attention") and _diffusers_allows("_CAN_USE_XFORMERS_ATTN"):
        modes.add(AttentionMode.XFORMERS)
    return modes


def allowed_modes(caps: ArchCaps | None) -> set[AttentionMode]:
    """Modes the device allows; None means CPU, where only sdpa runs."""
    if caps is None:
        return {AttentionMode.SDPA}
    wanted = {
        AttentionMode.SDPA: True,
        AttentionMode.SAGE: caps.sage,
        AttentionMode.SAGE2: caps.sage2,
        AttentionMode.FLASH: caps.flash,
        AttentionMode.XFORMERS: True,  # WanGP offers it on every CUDA card it runs on
    }
    return {mode for mode, ok in wanted.items() if ok}


def choose(requested: AttentionMode, caps: ArchCaps | None) -> AttentionMode:
    """The mode to run: `requested` if it can run here, the best available for auto."""
    usable = installed_modes() & allowed_modes(caps)
    if requested is AttentionMode.AUTO:
        return next(mode for mode in AUTO_ORDER if mode in usable)
    if requested not in usable:
        why = "not installed" if requested not in installed_modes() else "not allowed on this device"
        raise AttentionUnavailable(f"attention {requested.value!r} is {why}; usable here: {_names(usable)}")
    return requested


def apply(pipe: Any, mode: AttentionMode) -> None:
    """Point every transformer of the pipeline at the backend of `mode` (AttentionUnavailable when
    its kernel does not import)."""
    from models import sage_attention, xformers_attention

    own = mode in (AttentionMode.SAGE, AttentionMode.SAGE2)
    if own and sage_attention.register(mode.value) is None:
        raise AttentionUnavailable(
            f"attention {mode.value!r} is not installed: SageAttention does not import"
        )
    if mode is AttentionMode.XFORMERS:
        xformers_attention.register()  # a call xFormers refuses runs sdpa, counted as sdpa
    for name, component in pipe.components.items():
        if name.startswith("transformer") and hasattr(component, "set_attention_backend"):
            with sage_attention.allowed() if own else nullcontext():
                component.set_attention_backend(BACKENDS[mode])


@contextmanager
def record_backends() -> Iterator[Counter[str]]:
    """Count calls per attention mode while the block runs (diffusers' dispatcher only)."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from models.fallback_backend import FallbackBackend

    registry: dict[str, Callable[..., Any]] = _AttentionBackendRegistry._backends
    calls: Counter[str] = Counter()
    originals = dict(registry)
    own: list[FallbackBackend] = []  # the farm's own count the kernel that really ran themselves
    for backend, function in originals.items():
        if isinstance(function, FallbackBackend):
            function.calls = calls
            own.append(function)
        else:
            registry[backend] = _counting(function, MODE_OF_BACKEND.get(backend, backend), calls)
    try:
        yield calls
    finally:
        registry.update(originals)
        for function in own:
            function.calls = None


def _counting(function: Callable[..., Any], label: str, calls: Counter[str]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[label] += 1
        return function(*args, **kwargs)

    return counted


def _imports(module: str, attribute: str) -> bool:
    try:
        if importlib.util.find_spec(module) is None:  # a submodule's parent is imported to look
            return False
        return hasattr(importlib.import_module(module), attribute)
    except Exception:  # a kernel package that fails to import (no triton, no CUDA) is absent
        return False


def _diffusers_allows(flag: str) -> bool:
    # diffusers checks the kernel package's version once, at import, and its backends raise when it
    # is too old (SageAttention 1.x from PyPI, say): such a kernel is as good as absent.
    try:
        dispatch = importlib.import_module("diffusers.models.attention_dispatch")
    except Exception:
        return False
    return bool(getattr(dispatch, flag, False))


def _names(modes: set[AttentionMode]) -> str:
    return ", ".join(sorted(m.value for m in modes))
