"""HunyuanVideo LoRAs in both key layouts, rendered through the farm's pipeline host on a tiny
HunyuanVideo (models.tiny.tiny_hunyuan) saved as the hunyuan-video-t2v-13b preset's weights.

The original layout is the one WanGP's HunyuanVideo reads (`diffusion_model.` + its own module
names such as `double_blocks.N.img_attn_qkv`, with `lora_A` / `lora_B`), at deepbeepmeep/Wan2GP
8681e9f7 (models/hyvideo/modules/models.py names the modules; mmgp strips the prefix); diffusers'
HunyuanVideoLoraLoaderMixin converts it. The diffusers layout is PEFT's `transformer.` keys. WanGP
(through mmgp) also reads `lora_down` / `lora_up` with an `alpha` (scaling alpha / rank), and any
layer of its model, which the farm reads first where diffusers' converter would not
(models.hunyuan_loras).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.catalogue import get_model
from models.lora_adapters import _mmgp_state_dict
from models.loras import LoraLibrary, LoraMismatch
from models.runner import PipelineHost
from models.tiny import tiny_hunyuan
from models.tiny_loras import LoraLayout, save_tiny_lora, tiny_lora
from models.weights import WeightCache
from tests.tiny_requests import cache_as, lora_request

PRESET = get_model("hunyuan-video-t2v-13b")
STEPS = 2
DIFFUSERS = "tiny-hunyuan-diffusers.safetensors"
ORIGINAL = "tiny-hunyuan-original.safetensors"
KOHYA_ALPHA = "tiny-hunyuan-down-up-alpha.safetensors"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeightCache]:
    """A weight cache holding the tiny HunyuanVideo as HunyuanVideo T2V 13B."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    cache_as(cache, PRESET, tiny_hunyuan())
    yield cache


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny HunyuanVideo LoRA in both layouts, in WanGP's hunyuan/ folder."""
    root = tmp_path_factory.mktemp("loras")
    save_tiny_lora(root / "hunyuan" / DIFFUSERS, "hunyuan", LoraLayout.DIFFUSERS)
    save_tiny_lora(root / "hunyuan" / ORIGINAL, "hunyuan", LoraLayout.ORIGINAL)
    # The original layout's weights as lora_down / lora_up with alpha = 2 x rank over a halved down.
    kohya: dict[str, torch.Tensor] = {}
    for key, value in tiny_lora("hunyuan", LoraLayout.ORIGINAL).items():
        if key.endswith(".lora_A.weight"):
            kohya[key.replace(".lora_A.weight", ".lora_down.weight")] = value / 2
            kohya[key.replace(".lora_A.weight", ".alpha")] = torch.tensor(2.0 * value.shape[0])
        else:
            kohya[key.replace(".lora_B.weight", ".lora_up.weight")] = value
    save_file(kohya, str(root / "hunyuan" / KOHYA_ALPHA))
    return root


@pytest.fixture(scope="module")
def host(cache: WeightCache, lora_root: Path) -> PipelineHost:
    """One hot host for the module, as an agent keeps one."""
    return PipelineHost(cache, loras=LoraLibrary(lora_root))


@pytest.fixture(scope="module")
def plain(host: PipelineHost) -> np.ndarray:
    """The render without LoRA, on the module's host."""
    return render(host)


def render(host: PipelineHost, loras: Sequence[str] = (), multipliers: str = "") -> np.ndarray:
    return host.generate(PRESET, lora_request(PRESET, 5, STEPS, loras, multipliers)).frames


def test_the_tiny_keeps_hunyuan_videos_layout() -> None:
    pipe = tiny_hunyuan()
    assert type(pipe).__name__ == PRESET.pipeline
    assert pipe.transformer.config.in_channels == PRESET.latent.channels
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (
        PRESET.latent.spatial,
        PRESET.latent.temporal,
    )
    # The pipeline crops its prompt template's first 95 tokens: here too they are the template's.
    template = pipe.tokenizer("<|start_header_id|>user<|end_header_id|>\n\na fox")["input_ids"]
    assert pipe.tokenizer.decode(template[-2:]) == "a fox"


def test_both_key_layouts_load_and_render_alike(host: PipelineHost, plain: np.ndarray) -> None:
    diffusers_layout = render(host, [DIFFUSERS])
    assert np.array_equal(render(host, [ORIGINAL]), diffusers_layout)
    assert not np.array_equal(diffusers_layout, plain)


@pytest.mark.parametrize("lora", [DIFFUSERS, ORIGINAL])
def test_multiplier_0_renders_the_same_bytes_as_no_lora_and_1_changes_them(
    host: PipelineHost, plain: np.ndarray, lora: str
) -> None:
    assert np.array_equal(render(host, [lora], "0"), plain)
    assert not np.array_equal(render(host, [lora], "1"), plain)


def test_a_job_without_lora_after_one_with_renders_as_on_a_fresh_host(
    cache: WeightCache, lora_root: Path
) -> None:
    hot = PipelineHost(cache, loras=LoraLibrary(lora_root))
    render(hot, [DIFFUSERS, ORIGINAL], "1.5 0.5")
    after = render(hot)
    fresh = render(PipelineHost(cache))
    assert hot.loads == 1
    assert np.array_equal(after, fresh)


def test_lora_down_up_with_alpha_renders_as_the_same_weights_in_lora_a_b(host: PipelineHost) -> None:
    assert np.array_equal(render(host, [KOHYA_ALPHA]), render(host, [ORIGINAL]))


def test_the_final_modulation_and_refiner_qkv_render_as_the_same_lora_in_diffusers_names(
    host: PipelineHost, lora_root: Path, plain: np.ndarray
) -> None:
    # Layers whose down matrix diffusers' converter would split: (shift, scale) and fused q, k, v.
    modules = tiny_hunyuan().transformer.named_modules()
    shapes = {name: module.weight.shape for name, module in modules if isinstance(module, torch.nn.Linear)}
    final_out, final_in = shapes["norm_out.linear"]
    refiner = "context_embedder.token_refiner.refiner_blocks.0.attn"
    qkv_out, qkv_in = shapes[f"{refiner}.to_q"]
    generator = torch.Generator().manual_seed(5)
    final_down, final_up = (
        torch.randn(4, final_in, generator=generator),
        torch.randn(final_out, 4, generator=generator),
    )
    qkv_down, qkv_up = (
        torch.randn(4, qkv_in, generator=generator),
        torch.randn(3 * qkv_out, 4, generator=generator),
    )
    original = {
        "diffusion_model.final_layer.adaLN_modulation.1.lora_A.weight": final_down,
        "diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight": final_up,
        "diffusion_model.txt_in.individual_token_refiner.blocks.0.self_attn_qkv.lora_A.weight": qkv_down,
        "diffusion_model.txt_in.individual_token_refiner.blocks.0.self_attn_qkv.lora_B.weight": qkv_up,
    }
    shift, scale = final_up.chunk(2)
    ours = {
        "transformer.norm_out.linear.lora_A.weight": final_down,
        "transformer.norm_out.linear.lora_B.weight": torch.cat([scale, shift]),
    }
    for projection, up in zip("qkv", qkv_up.chunk(3), strict=True):
        ours[f"transformer.{refiner}.to_{projection}.lora_A.weight"] = qkv_down.clone()
        ours[f"transformer.{refiner}.to_{projection}.lora_B.weight"] = up.contiguous()
    save_file(
        tiny_lora("hunyuan", LoraLayout.ORIGINAL) | original, str(lora_root / "hunyuan" / "o.safetensors")
    )
    save_file(tiny_lora("hunyuan", LoraLayout.DIFFUSERS) | ours, str(lora_root / "hunyuan" / "d.safetensors"))
    with_original_names = render(host, ["o.safetensors"])
    # The same weights, held in tensors laid out differently, differ by float rounding (1e-6 in the
    # transformer's output), at most one level in a pixel; misread layers would move whole frames.
    difference = np.abs(with_original_names.astype(int) - render(host, ["d.safetensors"]).astype(int))
    assert difference.max() <= 1
    assert np.abs(with_original_names.astype(int) - plain.astype(int)).max() > 8


def test_the_state_dict_mmgp_reads_names_the_tiny_transformers_own_layers(lora_root: Path) -> None:
    # mmgp (CUDA only) reads the same conversion; checked here on the file with the kohya suffixes.
    pipe = tiny_hunyuan()
    state = _mmgp_state_dict(type(pipe), load_file(lora_root / "hunyuan" / KOHYA_ALPHA))
    modules = {name for name, _ in pipe.transformer.named_modules()}
    layers = {key.split(".lora_")[0] for key in state}
    assert layers and layers <= modules


def test_a_lora_of_another_family_is_refused_naming_it(host: PipelineHost, lora_root: Path) -> None:
    save_tiny_lora(lora_root / "hunyuan" / "wan.safetensors", "wan", LoraLayout.ORIGINAL)
    with pytest.raises(LoraMismatch, match=r"LoRA 'wan\.safetensors' .*hunyuan-video-t2v-13b"):
        render(host, ["wan.safetensors"])
