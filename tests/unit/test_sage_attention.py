"""The farm's own SageAttention backend (models.sage_attention): dispatch, layout, fallbacks, counting.

SageAttention's kernels are Triton and CUDA, which this CPU machine cannot run. A stand-in of the
same signature computes exact attention in the layout it is given, and its backend is told that the
kernel runs on the CPU: what is tested is the farm's side. tests/gpu runs the real kernels.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any

import pytest
import torch

from models import attention, sage_attention
from models.attention import AttentionMode, AttentionUnavailable
from models.gpus import find_gpu
from models.tiny import wan_transformer


class StandIn:
    """`sageattn` as SageAttention defines it, computed exactly; it records the layouts it was given."""

    def __init__(self) -> None:
        self.layouts: list[str] = []

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tensor_layout: str = "HND",
        is_causal: bool = False, sm_scale: float | None = None,
    ) -> torch.Tensor:  # fmt: skip
        self.layouts.append(tensor_layout)
        if tensor_layout == "NHD":  # [batch, sequence, heads, dim] -> [batch, heads, sequence, dim]
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scale = sm_scale if sm_scale is not None else q.shape[-1] ** -0.5
        weights = (q.float() @ k.float().transpose(-1, -2) * scale).softmax(-1)
        out = (weights @ v.float()).to(q.dtype)
        return out.transpose(1, 2) if tensor_layout == "NHD" else out


def install(monkeypatch: pytest.MonkeyPatch, sage2: bool = False) -> StandIn:
    """A `sageattention` that imports with the stand-in as `sageattn` (SageAttention 1.0.6's one
    kernel), and as SageAttention 2's fp16 CUDA kernel too when `sage2`."""
    module = types.ModuleType("sageattention")
    module.__spec__ = importlib.machinery.ModuleSpec("sageattention", loader=None)
    kernel = StandIn()
    module.sageattn = kernel  # type: ignore[attr-defined]
    if sage2:
        module.sageattn_qk_int8_pv_fp16_cuda = kernel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sageattention", module)
    return kernel


def on_cpu(mode: str) -> sage_attention.SageBackend:
    backend = sage_attention.register(mode)
    assert backend is not None
    backend.device_type = "cpu"  # the stand-in runs where the tensors are
    return backend


def qkv(dtype: torch.dtype = torch.bfloat16, head_dim: int = 64, heads: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, 24, heads, head_dim, generator=generator).to(dtype) for _ in range(3)]


def dispatch(
    mode: AttentionMode, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any
) -> torch.Tensor:
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    name = AttentionBackendName(attention.BACKENDS[mode])
    out: torch.Tensor = dispatch_attention_fn(q, k, v, backend=name, **kwargs)
    return out


def test_sage_1_counts_as_installed_though_diffusers_refuses_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusers.models import attention_dispatch

    install(monkeypatch)
    assert not attention_dispatch._CAN_USE_SAGE_ATTN  # diffusers wants >= 2.1.1
    assert attention.installed_modes() == {AttentionMode.SDPA, AttentionMode.SAGE}
    assert attention.choose(AttentionMode.AUTO, find_gpu("RTX 4090").caps) is AttentionMode.SAGE
    assert attention.choose(AttentionMode.AUTO, find_gpu("GTX 1080").caps) is AttentionMode.SDPA  # sm61
    assert attention.choose(AttentionMode.AUTO, None) is AttentionMode.SDPA  # CPU
    install(monkeypatch, sage2=True)
    assert attention.choose(AttentionMode.AUTO, find_gpu("RTX 4090").caps) is AttentionMode.SAGE2


def test_no_sageattention_no_sage(
    monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]
) -> None:
    monkeypatch.setitem(sys.modules, "sageattention", None)  # import fails
    assert attention.installed_modes() == {AttentionMode.SDPA}
    assert sage_attention.register("sage") is None
    with pytest.raises(AttentionUnavailable, match="'sage' is not installed"):
        attention.apply(types.SimpleNamespace(components={}), AttentionMode.SAGE)


@pytest.mark.parametrize("mode", [AttentionMode.SAGE, AttentionMode.SAGE2])
def test_the_kernel_gets_diffusers_layout_and_counts_as_what_ran(
    mode: AttentionMode, monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]
) -> None:
    kernel = install(monkeypatch, sage2=True)
    on_cpu(mode.value)
    tensors = qkv()
    with attention.record_backends() as calls:
        out = dispatch(mode, *tensors)
    assert calls == {mode: 1} and kernel.layouts == ["NHD"]
    expected = dispatch(AttentionMode.SDPA, *(t.float() for t in tensors))
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "case",
    ["fp32", "head size 80", "mask", "grouped heads", "on another device"],
)
def test_a_call_the_kernel_cannot_take_runs_sdpa_and_counts_as_sdpa(
    case: str, monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]
) -> None:
    kernel = install(monkeypatch)
    backend = on_cpu("sage")
    q, k, v = qkv(torch.float32 if case == "fp32" else torch.bfloat16, 80 if case == "head size 80" else 64)
    kwargs: dict[str, Any] = {}
    if case == "mask":
        kwargs["attn_mask"] = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    if case == "grouped heads":
        k, v = k[:, :, :2], v[:, :, :2]
        kwargs["enable_gqa"] = True
    if case == "on another device":
        backend.device_type = "cuda"
    with attention.record_backends() as calls:
        out = dispatch(AttentionMode.SAGE, q, k, v, **kwargs)
    assert calls == {AttentionMode.SDPA: 1} and kernel.layouts == []
    torch.testing.assert_close(out, dispatch(AttentionMode.SDPA, q, k, v, **kwargs))


def test_a_kernel_that_raises_is_said_once_and_sdpa_runs_from_then_on(
    monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    kernel = install(monkeypatch)
    backend = on_cpu("sage")

    def fails(*args: Any, **kwargs: Any) -> torch.Tensor:
        kernel.layouts.append("raised")
        raise RuntimeError("Triton: no kernel for this card")

    backend.sage = fails
    tensors = qkv()
    with attention.record_backends() as calls:
        first = dispatch(AttentionMode.SAGE, *tensors)
        second = dispatch(AttentionMode.SAGE, *tensors)
    assert calls == {AttentionMode.SDPA: 2} and kernel.layouts == ["raised"]  # tried once only
    assert [r.getMessage() for r in caplog.records if "SageAttention" in r.getMessage()] == [
        "SageAttention (sage) failed, sdpa runs instead: RuntimeError: Triton: no kernel for this card"
    ]
    torch.testing.assert_close(first, second)


def test_out_of_memory_in_the_kernel_is_the_jobs_and_leaves_the_kernel_in_use(
    monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]
) -> None:
    install(monkeypatch)
    backend = on_cpu("sage")
    real = backend.sage

    def short_of_memory(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    backend.sage = short_of_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        dispatch(AttentionMode.SAGE, *qkv())
    backend.sage = real
    with attention.record_backends() as calls:
        dispatch(AttentionMode.SAGE, *qkv())
    assert backend.broken is None and calls == {AttentionMode.SAGE: 1}


def test_a_transformer_renders_through_the_farms_sage_backend(
    monkeypatch: pytest.MonkeyPatch, attention_registry: dict[Any, Any]
) -> None:
    # A tiny Wan transformer with SageAttention's head size, pointed at "sage" as the runner does.
    kernel = install(monkeypatch)
    on_cpu("sage")
    model = wan_transformer(attention_head_dim=64).to(torch.bfloat16)
    pipe = types.SimpleNamespace(components={"transformer": model, "vae": object()})
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator).to(torch.bfloat16)
    text = torch.randn(1, 6, 32, generator=generator).to(torch.bfloat16)
    timestep = torch.tensor([500])

    def render() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(latents, timestep, text, return_dict=False)[0]
            return out

    attention.apply(pipe, AttentionMode.SDPA)
    with attention.record_backends() as calls:
        plain = render()
    assert calls == {AttentionMode.SDPA: 4}  # 2 layers x (self, cross)
    attention.apply(pipe, AttentionMode.SAGE)
    with attention.record_backends() as calls:
        sage = render()
    assert calls == {AttentionMode.SAGE: 4} and kernel.layouts == ["NHD"] * 4
    torch.testing.assert_close(sage.float(), plain.float(), atol=5e-2, rtol=5e-2)
