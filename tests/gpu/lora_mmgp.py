"""LoRAs under mmgp on the GPU: each tiny family's LoRA (models.tiny_loras, in its original key layout,
as users share them) rendered through the pipeline host under each memory profile, where mmgp's LoRA
slots apply it (models.lora_adapters.MmgpAdapters), against the same LoRA fused into the weights by
diffusers (`fuse_lora`, from its PEFT layout) and rendered under the same profile.

One JSON line per family and profile. It compares the latents the VAE decodes, as |a - b| over the
norm of those without LoRA: `effect` (with the LoRA against without), `off_fused` (with the LoRA at
weights 1 and 0.5 against the weights it is fused into at each), `clean` (without LoRA, before
against after the LoRA jobs), with the adapters and kernel that ran, peak VRAM and seconds. Pass:
effect > 0.1, off_fused <= 0.1 x effect (the LoRA ran, at the weight asked) and clean <= 0.001 (the
adapters switched off after the job). Exit 1 when one fails.

Without CUDA the host renders on the CPU with diffusers' PEFT adapters (no profile): the same checks.
    python tests/gpu/lora_mmgp.py [--families wan,flux,ltx,qwen-image,hunyuan] [--profiles 1,...,5]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

# family: (the preset its tiny weights stand for, its LoRA folder in WanGP's layout)
FAMILIES = {
    "wan": ("wan-tiny", "wan"),
    "flux": ("flux-tiny", "flux"),
    "ltx": ("ltx-tiny", "ltxv"),
    "qwen-image": ("qwen-image-tiny", "qwen"),
    "hunyuan": ("hunyuan-video-t2v-13b", "hunyuan"),
}
STEPS = 4
MULTIPLIERS = (1.0, 0.5)  # two weights: the one asked is the one that runs
# Latents are compared, as |a - b| / |latents without LoRA|: the tiny VAEs blur most of a change
# away. A tiny LoRA moves them by 0.48-0.78; at 0.5 or 2 times its weight they land 0.04-0.35 from
# its own (CPU, fp32); bf16 puts the LoRA 0.005-0.019 from the fused weights, int8 adds 0.003.
MIN_EFFECT = 0.1
FUSED_SHARE = 0.1  # off_fused at most this share of the effect
CLEAN = 1e-3  # the same render before and after a LoRA job
LORA = "tiny-lora.safetensors"


def main(argv: list[str] | None = None) -> int:
    from tests.gpu.tiny_renders import run_families

    return run_families(argv, __doc__ or "", FAMILIES, _family)


def _family(family: str, profiles: list[Any], root: Path) -> bool:
    """Build the family's weights, LoRA and fused reference under `root`; check each profile."""
    from models.catalogue import get_model
    from models.loras import LoraLibrary
    from models.runner import PipelineHost
    from models.tiny_loras import LoraLayout, save_tiny_lora
    from models.weights import WeightCache
    from tests.gpu.tiny_renders import apart, render_latents

    preset_id, folder = FAMILIES[family]
    preset = get_model(preset_id)
    cache = WeightCache(root / "weights")
    save_tiny_lora(root / "loras" / folder / LORA, family, LoraLayout.ORIGINAL)
    peft = save_tiny_lora(root / "peft.safetensors", family, LoraLayout.DIFFUSERS)
    _cache_weights(cache, preset)
    host = PipelineHost(cache, loras=LoraLibrary(root / "loras"))
    fused_hosts = {}
    for weight in MULTIPLIERS:
        fused_cache = WeightCache(root / f"fused-{weight:g}")
        _cache_fused(fused_cache, preset, cache.folder(preset), peft, weight)
        fused_hosts[weight] = PipelineHost(fused_cache)
    request = _request(preset, (), 1.0)
    ok = True
    for profile in profiles:
        started = time.monotonic()
        plain, _ = render_latents(host, preset, request, profile)
        loras = {
            weight: render_latents(host, preset, _request(preset, (LORA,), weight), profile)
            for weight in MULTIPLIERS
        }
        after, _ = render_latents(host, preset, request, profile)
        off_fused = {}
        for weight, fused_host in fused_hosts.items():
            fused, _ = render_latents(fused_host, preset, request, profile)
            fused_host.unload()  # one pipeline on the card at a time, as an agent holds
            off_fused[weight] = apart(loras[weight][0], fused, plain)
        effect = apart(loras[1.0][0], plain, plain)
        clean = apart(after, plain, plain)
        out = loras[1.0][1]
        applied = [lora.name for lora in out.info.loras]
        passed = (
            effect > MIN_EFFECT
            and max(off_fused.values()) <= FUSED_SHARE * effect
            and clean <= CLEAN
            and applied == [LORA]
        )
        ok = ok and passed
        hot = host._hot  # the adapters the job's LoRA went through
        print(json.dumps({
            "check": "lora_mmgp", "family": family, "model": preset.id, "profile": out.info.profile,
            "adapters": type(hot.adapters).__name__ if hot is not None else None,
            "attention": out.info.attention, "applied": applied, "effect": round(effect, 4),
            "off_fused": {f"{weight:g}": round(off, 5) for weight, off in off_fused.items()},
            "clean": round(clean, 6),
            "peak_vram_mib": round(out.info.peak_vram_bytes / 2**20, 1),
            "seconds": round(time.monotonic() - started, 2), "ok": passed,
        }), flush=True)  # fmt: skip
    host.unload()
    return ok


def _cache_weights(cache: Any, preset: Any) -> None:
    """The family's tiny weights in `cache` as `preset`'s (a tiny preset builds its own)."""
    if preset.tiny:
        cache.ensure(preset)
        return
    from models.tiny import tiny_hunyuan
    from tests.tiny_requests import cache_as

    cache_as(cache, preset, tiny_hunyuan())  # the one family here without a tiny preset


def _cache_fused(cache: Any, preset: Any, folder: Path, lora: Path, weight: float) -> None:
    """`preset`'s weights from `folder` with `lora` fused in at `weight`, saved into `cache`."""
    import diffusers

    from tests.tiny_requests import cache_as

    pipe = getattr(diffusers, preset.pipeline).from_pretrained(folder)
    pipe.load_lora_weights(str(lora), adapter_name="fused")
    pipe.fuse_lora(lora_scale=weight)
    pipe.unload_lora_weights()  # the LoRA stays in the weights; its layers go
    cache_as(cache, preset, pipe)


def _request(preset: Any, loras: tuple[str, ...], weight: float) -> Any:
    from models.catalogue import Output
    from tests.tiny_requests import lora_request

    frames = 5 if preset.family == "wan" else 9 if preset.output is Output.VIDEO else 1
    return lora_request(preset, frames, STEPS, loras, f"{weight:g}" if loras else "")


if __name__ == "__main__":
    sys.exit(main())
