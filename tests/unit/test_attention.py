"""Which attention kernels count as installed: one diffusers dispatches to itself and refuses is as
good as absent. (xFormers: tests/unit/test_xformers_attention.py.)"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from models import attention
from models.attention import AttentionMode
from models.gpus import find_gpu


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
