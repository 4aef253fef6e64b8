"""xFormers as a kernel of the farm (models.attention, models.xformers_attention): installed where
diffusers dispatches to it, allowed on any CUDA card and never chosen by auto (as WanGP offers it:
deepbeepmeep/Wan2GP 8681e9f7, shared/attention.py), counted as what ran, and a call it refuses runs
sdpa, counted as sdpa.

xFormers' kernels need CUDA. A stand-in `xformers.ops` computes exact attention in xFormers' layout
and, like its CUTLASS kernel on tensor cores, refuses head sizes that are not multiples of 8: what is
tested is the farm's side. tests/gpu (sage.py, smoke.py) runs the real kernel.
"""

from __future__ import annotations

import importlib.machinery
import logging
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

ALIGNMENT = 8  # xFormers' CUTLASS kernel on tensor cores: 128 bits of a half type


@pytest.fixture
def xformers(monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]) -> Iterator[list[int]]:
    """The stand-in, which diffusers may dispatch to; yields the head sizes it computed."""
    from diffusers.models import attention_dispatch

    heads: list[int] = []

    def memory_efficient_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_bias: Any = None,
        p: float = 0.0,
        scale: Any = None,
    ) -> torch.Tensor:
        if q.shape[-1] % ALIGNMENT:
            raise NotImplementedError(
                "No operator found for `memory_efficient_attention_forward` with inputs:\n"
                f"     query       : shape={tuple(q.shape)} ({q.dtype})\n"
                f"`cutlassF-pt` is not supported because:\n    query.shape[-1] % {ALIGNMENT} != 0"
            )
        heads.append(q.shape[-1])
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
    yield heads


def renders(head_dim: int) -> tuple[Any, Any]:
    """A tiny Wan transformer with heads of `head_dim` in a pipeline, and a forward of it."""
    model = wan_transformer(attention_head_dim=head_dim)
    pipe = types.SimpleNamespace(components={"transformer": model, "vae": object()})
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator)
    text = torch.randn(1, 6, 32, generator=generator)

    def render() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(latents, torch.tensor([500]), text, return_dict=False)[0]
            return out

    return pipe, render


def test_xformers_is_installed_when_diffusers_dispatches_to_it_and_runs_only_when_asked(
    xformers: list[int], monkeypatch: pytest.MonkeyPatch
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


def test_a_transformer_pointed_at_xformers_runs_its_kernel_and_counts_it(xformers: list[int]) -> None:
    pipe, render = renders(head_dim=16)
    attention.apply(pipe, AttentionMode.SDPA)
    with attention.record_backends() as calls:
        plain = render()
    assert calls == {AttentionMode.SDPA: 4} and xformers == []  # 2 layers x (self, cross)
    attention.apply(pipe, AttentionMode.XFORMERS)
    with attention.record_backends() as calls:
        through_xformers = render()
    assert calls == {AttentionMode.XFORMERS: 4} and xformers == [16] * 4
    torch.testing.assert_close(through_xformers, plain)


def test_a_call_xformers_refuses_runs_sdpa_counted_as_sdpa_and_said_once(
    xformers: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    pipe, render = renders(head_dim=12)  # the tiny Wan's own head size
    attention.apply(pipe, AttentionMode.SDPA)
    plain = render()
    attention.apply(pipe, AttentionMode.XFORMERS)
    with caplog.at_level(logging.WARNING, "models.xformers_attention"), attention.record_backends() as calls:
        first = render()
        second = render()
    assert calls == {AttentionMode.SDPA: 8} and xformers == []
    assert torch.equal(first, plain) and torch.equal(second, plain)
    [said] = [record.getMessage() for record in caplog.records if record.name == "models.xformers_attention"]
    assert said.startswith("xFormers refused a call ([1, ") and "No operator found" in said
