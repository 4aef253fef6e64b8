"""WanGP's single-file weights on the GPU: a WanGP definition whose URLs list a finetune's transformer
as a bf16 file and as an int8 quanto file (both in the model's original key layout), rendered through
the pipeline host under each memory profile. WanGP's choice decides the file: a profile that
quantizes loads the int8 file through mmgp; the others load the bf16 one. Two families, two layouts:
Wan (its names renamed) and HunyuanVideo (fused q, k, v cut along their int8 rows, models.quanto_rows).

The reference is the same finetune saved as a diffusers folder, rendered under the same profile
(where a quantizing profile has mmgp quantize it). One JSON line per family and profile, comparing
the latents the VAE decodes, as |a - b| / |reference|: `off_folder` (file against reference),
`off_base` (the base model's render against the reference: how far a wrong load would land), the
file that loaded, peak VRAM, seconds. Pass: the expected file loaded; off_folder <= 0.001 for the
bf16 file (the same weights in the same type), <= 0.1 x off_base for the int8 one. Exit 1 on a failure.

Without CUDA the host loads the bf16 file on the CPU (an int8 file needs CUDA and mmgp): the same checks.
    python tests/gpu/weight_files.py [--families wan,hunyuan] [--profiles 1,2,3,3+,4,4+,5]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests package, run as a file

# family: (the catalogue model its tiny weights stand for, WanGP's architecture for a definition)
FAMILIES = {"wan": ("wan-tiny", "wan-tiny"), "hunyuan": ("hunyuan-video-t2v-13b", "hunyuan")}
NUDGE = 0.05  # the finetune: every weight moved by this much of a standard normal (seeded)
SAME = 1e-3  # the bf16 file against the folder of the same weights
INT8_SHARE = 0.1  # mmgp's int8 of the folder against quanto's int8 file of the same weights


def main(argv: list[str] | None = None) -> int:
    from tests.gpu.tiny_renders import run_families

    return run_families(argv, __doc__ or "", FAMILIES, _family)


def _family(family: str, profiles: list[Any], root: Path) -> bool:
    from models.catalogue import catalogue, get_model
    from models.runner import PipelineHost
    from models.single_file import quanto_installed
    from models.wangp_definitions import decide, parse_definition
    from models.weights import WeightCache
    from tests.gpu.tiny_renders import apart, render_latents
    from tests.tiny_requests import cache_as

    base_id, architecture = FAMILIES[family]
    base = get_model(base_id)
    pipe = _tiny_pipeline(family)
    cache, folder_cache = WeightCache(root / "weights"), WeightCache(root / "folder")
    cache_as(cache, base, pipe)
    _nudge(pipe.transformer)
    cache_as(folder_cache, base, pipe)  # the finetune as a diffusers folder: the reference
    bf16, int8 = _write_files(family, pipe.transformer, root / "files")
    definition = {"model": {"architecture": architecture, "URLs": [bf16.as_uri(), int8.as_uri()]}}
    verdict = decide(parse_definition(f"{family}_tiny_finetune", definition), catalogue())
    if verdict.preset is None:
        raise RuntimeError(f"the definition is refused: {verdict.reason}")
    finetune = verdict.preset
    host, folder_host = PipelineHost(cache), PipelineHost(folder_cache)
    request = _request(base)
    ok = True
    for profile in profiles:
        started = time.monotonic()
        quantizes = host.gpu is not None and profile.spec.quantize and quanto_installed()
        expected = int8 if quantizes else bf16
        from_file, out = render_latents(host, finetune, request, profile)
        from_base, _ = render_latents(host, base, request, profile)
        host.unload()
        reference, _ = render_latents(folder_host, base, request, profile)
        folder_host.unload()
        off_folder, off_base = apart(from_file, reference, reference), apart(from_base, reference, reference)
        limit = INT8_SHARE * off_base if quantizes else SAME
        passed = out.info.model_file == expected.name and off_folder <= limit and off_base > 10 * SAME
        ok = ok and passed
        print(json.dumps({
            "check": "weight_files", "family": family, "model": finetune.id, "profile": out.info.profile,
            "loaded": out.info.model_file, "int8": quantizes, "attention": out.info.attention,
            "off_folder": round(off_folder, 6), "off_base": round(off_base, 4), "limit": round(limit, 6),
            "peak_vram_mib": round(out.info.peak_vram_bytes / 2**20, 1),
            "seconds": round(time.monotonic() - started, 2), "ok": passed,
        }), flush=True)  # fmt: skip
    return ok


def _tiny_pipeline(family: str) -> Any:
    from models.tiny import tiny_hunyuan, tiny_pipeline

    return tiny_hunyuan() if family == "hunyuan" else tiny_pipeline(family)


def _nudge(model: Any) -> None:
    """Move every floating weight of `model` a little, seeded: a finetune of it."""
    import torch

    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(NUDGE * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))


def _write_files(family: str, transformer: Any, folder: Path) -> tuple[Path, Path]:
    """`transformer` as WanGP ships a finetune: a bf16 file and an int8 quanto file of the same
    weights, in the family's original layout."""
    import copy

    from safetensors.torch import save_file

    from models.hunyuan_layout import hunyuan_to_diffusers, hunyuan_to_original
    from models.quanto_rows import Converter
    from models.single_file import LAYOUTS
    from models.tiny import wan_to_original
    from models.tiny_hunyuan_video import quantized, write_int8_single_file

    layout: tuple[Converter, Converter]
    if family == "hunyuan":
        layout = (hunyuan_to_original, hunyuan_to_diffusers)
    else:
        layout = (wan_to_original, LAYOUTS["WanTransformer3DModel"].convert)
    folder.mkdir(parents=True, exist_ok=True)
    bf16 = folder / f"{family}_tiny_finetune_mbf16.safetensors"
    state = layout[0](dict(transformer.state_dict()))
    save_file({key: value.contiguous() for key, value in state.items()}, str(bf16))
    int8 = folder / f"{family}_tiny_finetune_quanto_mbf16_int8.safetensors"
    write_int8_single_file(int8, quantized(copy.deepcopy(transformer)), layout)
    return bf16, int8


def _request(preset: Any) -> Any:
    from tests.tiny_requests import lora_request

    return lora_request(preset, 5, 4)


if __name__ == "__main__":
    sys.exit(main())
