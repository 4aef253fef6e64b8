"""The latents a pipeline host's render hands its VAE, for GPU checks that compare renders: the tiny
VAEs blur most of a change in the denoiser away, so frames would hide what the latents show."""

from __future__ import annotations

from typing import Any


def render_latents(host: Any, preset: Any, request: Any, profile: Any) -> tuple[Any, Any]:
    """The latents the VAE decodes at the end of `host`'s render of `request` (float, on the CPU),
    and the render's output."""
    host._ensure_hot(preset, profile, lambda _progress: None)  # the pipeline the render will use
    vae = host._hot.pipe.vae
    own = vae.__dict__.get("decode")  # an offloading hook may sit there: put back as found
    decode, seen = vae.decode, []

    def watched(latents: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(latents.detach().float().cpu())
        return decode(latents, *args, **kwargs)

    vae.decode = watched
    try:
        out = host.generate(preset, request, profile)
    finally:
        if own is None:
            del vae.decode
        else:
            vae.decode = own
    return seen[-1], out


def apart(a: Any, b: Any, scale: Any) -> float:
    """|a - b| relative to |scale|."""
    return float((a - b).norm() / scale.norm())
