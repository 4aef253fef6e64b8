"""Real-size models with random weights for the GPU checks (no hub is reachable): built on the meta
device (no memory, no init) in their type, given storage on the device, filled with small random
values, so a 14B model is ready in seconds instead of minutes of CPU init."""

from __future__ import annotations

from typing import Any

# Wan 2.1's transformers as published (diffusers' WanTransformer3DModel configs).
WAN_14B = {
    "patch_size": (1, 2, 2), "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6,
}  # fmt: skip
WAN_1_3B = WAN_14B | {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30}


def random_model(
    cls: Any, config: dict[str, Any], device: str = "cuda", dtype: Any = None, generator: Any = None
) -> Any:
    """`cls(**config)` on `device` in `dtype` (bf16 by default), in eval mode, every floating tensor
    drawn from N(0, 0.02) by `generator` (a new one seeded 0 on `device` by default)."""
    import torch

    with torch.device("meta"):
        model = cls(**config).to(dtype or torch.bfloat16)
    model = model.to_empty(device=device).eval()
    generator = generator or torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
    return model
