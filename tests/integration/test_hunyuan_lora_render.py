"""HunyuanVideo LoRAs in both key layouts, rendered through the farm's pipeline host on a tiny
HunyuanVideo (models.tiny.tiny_hunyuan) saved as the hunyuan-video-t2v-13b preset's weights.

The original layout is the one WanGP's HunyuanVideo reads (`diffusion_model.` + its own module
names such as `double_blocks.N.img_attn_qkv`, with `lora_A` / `lora_B`), at deepbeepmeep/Wan2GP
8681e9f7 (models/hyvideo/modules/models.py names the modules; mmgp strips the prefix); diffusers'
HunyuanVideoLoraLoaderMixin converts it. The diffusers layout is PEFT's `transformer.` keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from models.catalogue import get_model
from models.loras import LoraLibrary, LoraMismatch, parse_loras
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.tiny import tiny_hunyuan
from models.tiny_loras import LoraLayout, save_tiny_lora
from models.weights import COMPLETE, WeightCache

PRESET = get_model("hunyuan-video-t2v-13b")
STEPS = 2
DIFFUSERS = "tiny-hunyuan-diffusers.safetensors"
ORIGINAL = "tiny-hunyuan-original.safetensors"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeightCache]:
    """A weight cache holding the tiny HunyuanVideo as HunyuanVideo T2V 13B."""
    cache = WeightCache(tmp_path_factory.mktemp("weights"))
    target = cache.folder(PRESET)
    tiny_hunyuan().save_pretrained(target, safe_serialization=True)
    (target / COMPLETE).write_text('{"source": "disk"}')
    yield cache


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny HunyuanVideo LoRA in both layouts, in WanGP's hunyuan/ folder."""
    root = tmp_path_factory.mktemp("loras")
    save_tiny_lora(root / "hunyuan" / DIFFUSERS, "hunyuan", LoraLayout.DIFFUSERS)
    save_tiny_lora(root / "hunyuan" / ORIGINAL, "hunyuan", LoraLayout.ORIGINAL)
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
    request = GenerationRequest(
        prompt="a fox in the snow",
        negative_prompt="",
        width=64,
        height=64,
        frames=5,
        steps=STEPS,
        guidance_scale=PRESET.defaults.guidance_scale,
        flow_shift=PRESET.defaults.flow_shift,
        sample_solver=PRESET.defaults.sample_solver,
        seed=7,
        loras=parse_loras(list(loras), multipliers, STEPS),
    )
    return host.generate(PRESET, request).frames


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


def test_a_lora_of_another_family_is_refused_naming_it(host: PipelineHost, lora_root: Path) -> None:
    save_tiny_lora(lora_root / "hunyuan" / "wan.safetensors", "wan", LoraLayout.ORIGINAL)
    with pytest.raises(LoraMismatch, match=r"LoRA 'wan\.safetensors' .*hunyuan-video-t2v-13b"):
        render(host, ["wan.safetensors"])
