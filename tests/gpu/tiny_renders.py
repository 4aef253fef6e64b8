"""What the GPU checks that compare tiny renders per family share: their command line (families,
memory profiles, a folder) and the latents a pipeline host's render hands its VAE (the tiny VAEs
blur most of a change in the denoiser away, so frames would hide what the latents show)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

ALL_PROFILES = "1,2,3,3+,4,4+,5"


def run_families(
    argv: list[str] | None, doc: str, families: Collection[str], check: Callable[[str, list[Any], Path], bool]
) -> int:
    """Parse `--families`, `--profiles` (CUDA only: the CPU host applies none, so one render says
    all) and `--dir`, then `check(family, profiles, folder)` each family; 0 when every one passed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--families", default=",".join(families))
    parser.add_argument("--profiles", default=ALL_PROFILES, help="memory profiles (CUDA only)")
    parser.add_argument("--dir", type=Path, help="where the weights go (a temporary folder)")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging

    from models.hf_logging import quiet_hf_libraries
    from models.profiles import Profile

    quiet_hf_libraries()  # saving tiny folders draws a bar per component
    diffusers_logging.set_verbosity_error()
    chosen = [name.strip() for name in args.families.split(",")]
    unknown = sorted(set(chosen) - set(families))
    if unknown:
        parser.error(f"unknown families: {', '.join(unknown)}; known: {', '.join(families)}")
    cuda = torch.cuda.is_available()
    profiles = [Profile.parse(p) for p in args.profiles.split(",")] if cuda else [Profile.P4]
    root = args.dir or Path(tempfile.mkdtemp(prefix="wanfarm-gpu-check-"))
    results = [check(family, profiles, root / family) for family in chosen]
    return 0 if all(results) else 1


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
