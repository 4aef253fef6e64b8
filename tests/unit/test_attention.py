"""Which attention kernels count as installed: one diffusers dispatches to itself and refuses is as
good as absent. xFormers, through diffusers' own backend, with a stand-in for its kernel (no CUDA
here): installed, allowed on any CUDA card, never chosen by auto, and counted as what ran."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from models import attention
from models.attention import AttentionMode
from models.gpus import find_gpu
from models.tiny import wan_transformer


def test_flash_that_diffusers_refuses_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # diffusers dispatches to flash-attn itself and refuses it below 2.6.3: such a kernel is absent.
    # (SageAttention goes through the farm's own backend: tests/unit/test_sage_attention.py.)
    from diffusers.models import attention_dispatch

    module = types.ModuleType("flash_attn")
    module.__spec__ = importlib.machinery.ModuleSpec("flash_attn", loader=None)
    module.flash_attn_func = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flash_attn", module)
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_FLASH_ATTN", False)
    hopper = find_gpu("H100 SXM").caps
    assert AttentionMode.FLASH not in attention.installed_modes()
    with pytest.raises(attention.AttentionUnavailable, match="'flash' is not installed"):
        attention.choose(AttentionMode.FLASH, hopper)
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_FLASH_ATTN", True)
    assert attention.choose(AttentionMode.FLASH, hopper) is AttentionMode.FLASH
    assert attention.choose(AttentionMode.AUTO, None) is AttentionMode.SDPA  # CPU: sdpa only


@pytest.fixture
def xformers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """A stand-in `xformers.ops` whose memory_efficient_attention is sdpa over xFormers' (batch,
    tokens, heads, dim) layout, which diffusers may dispatch to; yields the shapes it was called on.
    diffusers' backend registry and active backend are put back after the test."""
    from diffusers.models import attention_dispatch
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry as Registry

    shapes: list[tuple[int, ...]] = []

    def memory_efficient_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_bias: Any = None,
        p: float = 0.0,
        scale: Any = None,
    ) -> torch.Tensor:
        shapes.append(tuple(q.shape))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # heads first, as sdpa takes them
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=p, scale=scale
        ).transpose(1, 2)

    ops = types.ModuleType("xformers.ops")
    ops.__spec__ = importlib.machinery.ModuleSpec("xformers.ops", loader=None)
    ops.memory_efficient_attention = memory_efficient_attention  # type: ignore[attr-defined]
    package = types.ModuleType("xformers")
    package.__spec__ = importlib.machinery.ModuleSpec("xformers", loader=None, is_package=True)
    package.ops = ops  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xformers", package)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_XFORMERS_ATTN", True)
    monkeypatch.setattr(attention_dispatch, "xops", ops)
    active = Registry._active_backend
    yield shapes
    Registry._active_backend = active


def test_xformers_is_installed_when_diffusers_dispatches_to_it_and_runs_only_when_asked(
    xformers: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models import attention_dispatch

    assert AttentionMode.XFORMERS in attention.installed_modes()
    for card in ("GTX 1080", "RTX 2080 Ti", "RTX 4090", "H100 SXM"):  # WanGP offers it on any card
        assert attention.choose(AttentionMode.XFORMERS, find_gpu(card).caps) is AttentionMode.XFORMERS
        assert attention.choose(AttentionMode.AUTO, find_gpu(card).caps) is AttentionMode.SDPA
    with pytest.raises(attention.AttentionUnavailable, match="'xformers' is not allowed on this device"):
        attention.choose(AttentionMode.XFORMERS, None)  # the CPU
    monkeypatch.setattr(attention_dispatch, "_CAN_USE_XFORMERS_ATTN", False)  # below 0.0.29, say
    assert AttentionMode.XFORMERS not in attention.installed_modes()
    with pytest.raises(attention.AttentionUnavailable, match="'xformers' is not installed"):
        attention.choose(AttentionMode.XFORMERS, find_gpu("RTX 4090").caps)


def test_a_transformer_pointed_at_xformers_runs_its_kernel_and_counts_it(
    xformers: list[tuple[int, ...]],
) -> None:
    model = wan_transformer()
    pipe = types.SimpleNamespace(components={"transformer": model, "vae": object()})
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator)
    text = torch.randn(1, 6, 32, generator=generator)

    def render() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(latents, torch.tensor([500]), text, return_dict=False)[0]
            return out

    attention.apply(pipe, AttentionMode.SDPA)
    with attention.record_backends() as calls:
        plain = render()
    assert calls == {AttentionMode.SDPA: 4} and xformers == []  # 2 layers x (self, cross)
    attention.apply(pipe, AttentionMode.XFORMERS)
    with attention.record_backends() as calls:
        through_xformers = render()
    assert calls == {AttentionMode.XFORMERS: 4} and len(xformers) == 4
    torch.testing.assert_close(through_xformers, plain)
