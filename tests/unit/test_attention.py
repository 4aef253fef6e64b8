"""Which attention kernels count as installed: a kernel diffusers refuses is as good as absent."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from models import attention
from models.attention import AttentionMode
from models.gpus import find_gpu


@pytest.fixture
def old_sage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `sageattention` that imports and has `sageattn`, as SageAttention 1.0.6 from PyPI does."""
    module = types.ModuleType("sageattention")
    module.__spec__ = importlib.machinery.ModuleSpec("sageattention", loader=None)
    module.sageattn = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sageattention", module)


def test_sage_that_diffusers_refuses_is_not_installed_and_auto_falls_back_to_sdpa(old_sage: None) -> None:
    # diffusers decided at import that no usable sageattention (>= 2.1.1) is here.
    from diffusers.models import attention_dispatch

    assert not attention_dispatch._CAN_USE_SAGE_ATTN
    hopper = find_gpu("H100 SXM").caps
    assert attention.installed_modes() == {AttentionMode.SDPA}
    assert attention.choose(AttentionMode.AUTO, hopper) is AttentionMode.SDPA
    with pytest.raises(attention.AttentionUnavailable, match="'sage' is not installed"):
        attention.choose(AttentionMode.SAGE, hopper)


def test_sage_counts_once_diffusers_accepts_it(old_sage: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.models import attention_dispatch

    monkeypatch.setattr(attention_dispatch, "_CAN_USE_SAGE_ATTN", True)
    assert AttentionMode.SAGE in attention.installed_modes()
    assert attention.choose(AttentionMode.AUTO, find_gpu("RTX 4090").caps) is AttentionMode.SAGE
    assert attention.choose(AttentionMode.AUTO, None) is AttentionMode.SDPA  # CPU: sdpa only
