"""FLUX transformers from single files in Black Forest Labs' key layout (WanGP's Flux model files,
e.g. flux1-krea-dev_bf16.safetensors of defaults/flux_krea.json at Wan2GP 8681e9f7): the farm's
FLUX.1 converter agrees with diffusers' own at FLUX.1's width, and a tiny file in that layout
loads and renders exactly what the same weights render from the diffusers folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from safetensors import safe_open
from safetensors.torch import save_file

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import ModelPreset, catalogue, get_model
from models.flux_layouts import flux1_to_diffusers
from models.flux_refs import WANGP_NEGATIVE, flux_call_kwargs
from models.request import GenerationRequest
from models.single_file import SingleFileRefused, load_pipeline, load_transformer, reads_int8
from models.tiny import build_tiny
from models.tiny_flux import flux1_original, write_flux2_single_file, write_flux_single_file
from models.wangp_definitions import decide, own_weights, parse_definition

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"

REQUEST = GenerationRequest(
    prompt="a red hat",
    negative_prompt="",
    width=64,
    height=64,
    frames=1,
    steps=3,
    guidance_scale=3.5,
    flow_shift=None,
    sample_solver="euler",
    seed=11,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The flux-tiny diffusers folder and its transformer as one file in BFL's layout."""
    root = tmp_path_factory.mktemp("flux-single-file")
    build_tiny(get_model("flux-tiny"), root / "flux-tiny")
    transformer = diffusers.FluxTransformer2DModel.from_pretrained(root / "flux-tiny" / "transformer")
    return root / "flux-tiny", write_flux_single_file(root / "flux1-tiny_bf16.safetensors", transformer)


def test_the_flux1_converter_gives_diffusers_tensors_at_flux1_width() -> None:
    # FLUX.1 dev's width (3072, 24 heads) with two blocks of each kind, built without weights; each
    # tensor in BFL's layout is one numbered column, so every row's destination is checked exactly.
    with init_empty_weights():
        model: Any = diffusers.FluxTransformer2DModel(num_layers=2, num_single_layers=2, guidance_embeds=True)
    original = flux1_original(dict(model.state_dict()))
    thin, start = {}, 0
    for key, tensor in original.items():
        rows = tensor.shape[0]
        column = torch.arange(start, start + rows, dtype=torch.float64)
        thin[key] = column if tensor.ndim == 1 else column[:, None]
        start += rows
    ours = flux1_to_diffusers(dict(thin))
    theirs = dict(convert_flux_transformer_checkpoint_to_diffusers(dict(thin)))
    assert ours.keys() == theirs.keys() == model.state_dict().keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def test_the_tiny_file_is_in_bfl_layout(tiny: tuple[Path, Path]) -> None:
    _, path = tiny
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    assert {
        "double_blocks.0.img_attn.qkv.weight",
        "single_blocks.0.linear1.weight",
        "final_layer.adaLN_modulation.1.weight",
        "guidance_in.in_layer.weight",
    } <= keys
    assert not any(key.startswith(("transformer_blocks", "x_embedder")) for key in keys)


def test_the_tiny_file_renders_the_bytes_the_folder_renders(tiny: tuple[Path, Path]) -> None:
    folder, path = tiny
    preset = get_model("flux-tiny")
    loaded = load_transformer(preset, path, torch.float32, folder).state_dict()
    reference = diffusers.FluxTransformer2DModel.from_pretrained(folder / "transformer").state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)
    from_file = render(load_pipeline(preset, path, torch.float32, folder), preset)
    from_folder = render(diffusers.FluxPipeline.from_pretrained(folder), preset)
    assert from_file.tobytes() == from_folder.tobytes() and from_file.std() > 0


def test_a_flux_file_missing_a_block_is_refused_naming_its_keys(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, path = tiny
    with safe_open(str(path), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle)
    del state["double_blocks.0.txt_attn.proj.weight"]
    state["double_blocks.0.lora_extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(SingleFileRefused) as refused:
        load_transformer(get_model("flux-tiny"), tmp_path / "broken.safetensors", torch.float32, folder)
    message = str(refused.value)
    assert "lacks 1 key(s): transformer_blocks.0.attn.to_add_out.weight" in message
    assert "has unknown 1 key(s): double_blocks.0.lora_extra.weight" in message


def test_flux_int8_files_are_not_read_and_a_quantizing_card_takes_the_bf16_file(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    # The layout splits fused tensors, which a quanto file holds as quantized pieces.
    folder, _ = tiny
    assert not reads_int8(get_model("flux-tiny")) and reads_int8(get_model("wan-tiny"))
    save_file(
        {"double_blocks.0.img_attn.qkv.weight._data": torch.zeros(2)}, str(tmp_path / "q_int8.safetensors")
    )
    with pytest.raises(SingleFileRefused, match="converted tensor by tensor, not by name"):
        load_transformer(get_model("flux-tiny"), tmp_path / "q_int8.safetensors", torch.float32, folder)


def render(pipe: Any, preset: ModelPreset, request: GenerationRequest = REQUEST) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    images = np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).images)
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def test_flux_finetunes_with_files_of_their_own_are_served_from_them() -> None:
    definitions = json.loads(FIXTURE.read_text())["definitions"]
    for model_id, first in (
        ("flux_krea", "flux1-krea-dev_bf16.safetensors"),
        ("flux_srpo", "flux1-srpo-dev_bf16.safetensors"),
    ):
        preset = decide(parse_definition(model_id, definitions[model_id]), catalogue()).preset
        assert preset is not None and preset.derived_from == "flux.1-dev"
        assert own_weights(preset)[0] == first


@pytest.fixture(scope="module")
def klein(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The flux2-klein-tiny folder and its transformer as one file in BFL's FLUX.2 layout."""
    root = tmp_path_factory.mktemp("flux2-single-file")
    build_tiny(get_model("flux2-klein-tiny"), root / "klein")
    transformer = diffusers.Flux2Transformer2DModel.from_pretrained(root / "klein" / "transformer")
    return root / "klein", write_flux2_single_file(root / "flux-2-klein-tiny.safetensors", transformer)


def test_a_flux2_file_in_bfl_layout_renders_the_bytes_the_folder_renders(klein: tuple[Path, Path]) -> None:
    folder, path = klein
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    assert {"double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight"} <= keys
    preset = get_model("flux2-klein-tiny")
    request = replace(REQUEST, guidance_scale=1.0, steps=1)
    from_file = render(load_pipeline(preset, path, torch.float32, folder), preset, request)
    from_folder = render(diffusers.Flux2KleinPipeline.from_pretrained(folder), preset, request)
    assert from_file.tobytes() == from_folder.tobytes() and from_file.std() > 0


def test_klein_base_runs_cfg_on_wangps_negative_prompt(klein: tuple[Path, Path]) -> None:
    folder, _ = klein
    preset = get_model("flux2-klein-tiny")
    distilled = diffusers.Flux2KleinPipeline.from_pretrained(folder)
    assert flux_call_kwargs(distilled, preset, replace(REQUEST, guidance_scale=4.0)) == {}
    # The same modules as a Klein base model (not distilled): true CFG on the negative prompt WanGP
    # uses when the job's is empty (diffusers' own would be "").
    base: Any = diffusers.Flux2KleinPipeline(**distilled.components, is_distilled=False)
    kwargs = flux_call_kwargs(base, preset, replace(REQUEST, guidance_scale=4.0, negative_prompt=""))
    expected, _ = base.encode_prompt(prompt=WANGP_NEGATIVE, device=torch.device("cpu"))
    assert torch.equal(kwargs["negative_prompt_embeds"], expected)
    assert flux_call_kwargs(base, preset, replace(REQUEST, guidance_scale=1.0)) == {}
