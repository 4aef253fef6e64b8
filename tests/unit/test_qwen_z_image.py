"""Qwen-Image, Qwen-Image-Edit (Plus) and Z-Image from WanGP's definitions (defaults/*.json at Wan2GP
8681e9f7): their transformers from WanGP's single files, the `attention` and `unified_solver` model
keys, the edit models' input images, and the processor the edit repos cannot load without
torchvision."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from models import attention
from models.attention import AttentionMode
from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import ModelPreset, catalogue, get_model
from models.device import LocalGpu
from models.model_attention import model_kernel, rules_problem
from models.overrides import Overrides
from models.qwen_edit import WANGP_NEGATIVE, qwen_edit_kwargs
from models.qwen_processor import processor_parts
from models.request import GenerationRequest
from models.runner import PipelineHost
from models.single_file import SingleFileRefused, load_pipeline, load_transformer
from models.tiny import build_tiny
from models.tiny_qwen import write_qwen_single_file
from models.tiny_z_image import write_z_image_single_file
from models.wangp_definitions import decide, own_weights, parse_definition
from models.weights import WeightCache

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"

REQUEST = GenerationRequest(
    prompt="a red hat",
    negative_prompt="blurry",
    width=64,
    height=64,
    frames=1,
    steps=2,
    guidance_scale=4.0,
    flow_shift=None,
    sample_solver="euler",
    seed=7,
)


def definition(model_id: str) -> Any:
    data = json.loads(FIXTURE.read_text())["definitions"][model_id]
    return decide(parse_definition(model_id, data), catalogue())


def render(pipe: Any, preset: ModelPreset, request: GenerationRequest = REQUEST) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    return np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).images)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen-z")
    for model_id in ("qwen-image-tiny", "z-image-tiny"):
        build_tiny(get_model(model_id), root / model_id)
    return {"root": root} | {model_id: root / model_id for model_id in ("qwen-image-tiny", "z-image-tiny")}


def perturbed(model_class: Any, folder: Path) -> Any:
    """The folder's transformer with every weight moved: frames from it differ from the folder's."""
    transformer = model_class.from_pretrained(folder / "transformer")
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return transformer


@pytest.mark.parametrize(
    ("model_id", "model_class", "write"),
    [
        ("qwen-image-tiny", diffusers.QwenImageTransformer2DModel, write_qwen_single_file),
        ("z-image-tiny", diffusers.ZImageTransformer2DModel, write_z_image_single_file),
    ],
)
def test_a_wangp_file_renders_what_its_weights_render_from_a_folder(
    model_id: str, model_class: Any, write: Any, folders: dict[str, Path], tmp_path: Path
) -> None:
    preset, folder = get_model(model_id), folders[model_id]
    transformer = perturbed(model_class, folder)
    path = write(tmp_path / "finetune_bf16.safetensors", transformer)
    from_file = render(load_pipeline(preset, path, torch.float32, folder), preset)
    as_folder = render(
        getattr(diffusers, preset.pipeline).from_pretrained(folder, transformer=transformer), preset
    )
    # The file's weights, not the folder's: every tensor as written.
    loaded = load_transformer(preset, path, torch.float32, folder).state_dict()
    assert loaded.keys() == transformer.state_dict().keys()
    assert all(torch.equal(loaded[key], value) for key, value in transformer.state_dict().items())
    # The same weights render the same frames (to float rounding of the CPU kernels' threading).
    assert np.allclose(from_file, as_folder, atol=1e-5)


def test_z_image_files_in_the_original_release_names_load_as_wangps(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    preset, folder = get_model("z-image-tiny"), folders["z-image-tiny"]
    original = write_z_image_single_file(tmp_path / "comfy.safetensors", original=True)
    with safe_open(str(original), "pt") as handle:
        names = list(handle.keys())
    assert "model.diffusion_model.x_embedder.weight" in names
    assert any(".attention.out." in name for name in names)
    wangp = write_z_image_single_file(tmp_path / "wangp.safetensors")
    first = load_transformer(preset, original, torch.float32, folder).state_dict()
    second = load_transformer(preset, wangp, torch.float32, folder).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_fused_projections_are_refused_naming_them(folders: dict[str, Path], tmp_path: Path) -> None:
    # WanGP splits fused qkv tensors while loading; these layouts only rename, so such a file is
    # refused by name rather than loaded with projections missing.
    preset, folder = get_model("qwen-image-tiny"), folders["qwen-image-tiny"]
    with safe_open(str(write_qwen_single_file(tmp_path / "q.safetensors")), "pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safetensors handle)
    block = "transformer_blocks.0.attn."
    state[block + "to_qkv.weight"] = torch.cat([state.pop(block + f"to_{x}.weight") for x in "qkv"])
    save_file(state, str(tmp_path / "fused.safetensors"))
    with pytest.raises(SingleFileRefused, match=r"to_qkv\.weight") as refused:
        load_transformer(preset, tmp_path / "fused.safetensors", torch.float32, folder)
    assert "lacks 3 key(s)" in str(refused.value) and block + "to_q.weight" in str(refused.value)


def test_qwen_and_z_image_definitions_are_served_or_refused_by_name() -> None:
    served = {
        "qwen_image_2512_20B": "qwen-image",
        "qwen_image_edit_20B": "qwen-image-edit",
        "qwen_image_edit_plus_20B": "qwen-image-edit-2509",
        "qwen_image_edit_plus2_20B": "qwen-image-edit-2511",
        "z_image": "z-image-turbo",
        "z_image_base": "z-image",
    }
    for model_id, model in served.items():
        verdict = definition(model_id)
        assert verdict.preset is not None, verdict.reason
        assert model in (verdict.preset.id, verdict.preset.derived_from)
    # Qwen-Image 2512 renders its own file over Qwen-Image's folder, with WanGP's kernel rule.
    preset = definition("qwen_image_2512_20B").preset
    assert own_weights(preset)[0] == "qwen_image_2512_20B_bf16.safetensors"
    assert preset.attention == {"<89": "sdpa"}
    assert own_weights(definition("qwen_image_20B").preset) == ()
    refused = {
        "z_image_twinflow_turbo": "unified_solver",
        "z_image_nunchaku_r128_fp4": "svdq",
        "z_image_nunchaku_r256_int4": "int4",
        "qwen_image_edit_plus_20B_nunchaku_r128_fp4": "svdq",
        "qwen_image_layered_20B": "architecture 'qwen_image_layered_20B' is not supported",
    }
    for model_id, reason in refused.items():
        verdict = definition(model_id)
        assert verdict.preset is None and reason in verdict.reason, (model_id, verdict.reason)


def test_wangps_attention_rules_pick_a_kernel_per_card() -> None:
    rules = {"<89": "sdpa"}
    assert model_kernel(rules, (8, 6)) is AttentionMode.SDPA
    assert model_kernel(rules, (8, 9)) is None and model_kernel(rules, None) is None
    assert model_kernel({">=80&<90": "sage", "<=75+>=100": "sdpa"}, (8, 6)) is AttentionMode.SAGE
    assert model_kernel({">=80&<90": "sage", "<=75+>=100": "sdpa"}, (7, 5)) is AttentionMode.SDPA
    assert rules_problem(rules) is None
    assert rules_problem({"<89": "xformers"}) is None  # the farm has xFormers' kernel (where installed)
    assert "SageAttention 3" in str(rules_problem({"<89": "sage3"}))
    assert "not a condition" in str(rules_problem({"ampere": "sdpa"}))
    data = json.loads(FIXTURE.read_text())["definitions"]["qwen_image_2512_20B"]
    data["model"]["attention"] = {"<89": "sage3"}
    verdict = decide(parse_definition("mine", data), catalogue())
    assert verdict.preset is None and "attention" in verdict.reason and "sage3" in verdict.reason


def test_edit_calls_take_the_images_as_wangp_sizes_them(tmp_path: Path) -> None:
    Image.new("RGB", (96, 48), (200, 30, 30)).save(tmp_path / "wide.png")
    Image.new("RGB", (40, 80), (30, 200, 30)).save(tmp_path / "tall.png")
    request = replace(
        REQUEST, width=1024, height=1024, image_refs=(tmp_path / "wide.png", tmp_path / "tall.png")
    )
    edit = qwen_edit_kwargs(get_model("qwen-image-edit"), replace(request, negative_prompt=""))
    # "K": the first image's aspect ratio (2:1) at the canvas's pixel count, sides rounded to 16
    # (1448.2 x 724.1 before rounding).
    assert (edit["width"], edit["height"]) == (1456, 720)
    assert edit["negative_prompt"] == WANGP_NEGATIVE
    assert edit["image"].size == (96 + 24, 48)  # Edit: one image, the second at the first's height
    plus = qwen_edit_kwargs(get_model("qwen-image-edit-2509"), request)
    assert [image.size for image in plus["image"]] == [(96, 48), (40, 80)]
    assert plus["negative_prompt"] == "blurry"
    with pytest.raises(ValueError, match="image_refs: qwen-image-edit edits input images"):
        qwen_edit_kwargs(get_model("qwen-image-edit"), REQUEST)
    assert qwen_edit_kwargs(get_model("qwen-image"), REQUEST) == {}


def test_the_edit_repos_processor_loads_without_torchvision(tmp_path: Path) -> None:
    # The edit repos list transformers' Qwen2VLProcessor, whose video half needs torchvision.
    preset = get_model("qwen-image-edit-tiny")
    build_tiny(preset, tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    (tmp_path / "model_index.json").write_text(
        json.dumps(index | {"processor": ["transformers", "Qwen2VLProcessor"]})
    )
    # As the repos hold it: the video processor's config beside the image processor's.
    video = {"video_processor_type": "Qwen2VLVideoProcessor", "patch_size": 14, "merge_size": 2}
    (tmp_path / "processor" / "video_preprocessor_config.json").write_text(json.dumps(video))
    with pytest.raises(ImportError, match=r"[Tt]orchvision"):
        diffusers.QwenImageEditPipeline.from_pretrained(tmp_path)
    pipe = diffusers.QwenImageEditPipeline.from_pretrained(
        tmp_path, **processor_parts(preset.pipeline, tmp_path)
    )
    inputs = pipe.processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>add a hat"], images=[Image.new("RGB", (64, 64))]
    )
    assert inputs["pixel_values"].shape[0] > 0 and inputs["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_the_pipeline_host_runs_the_models_kernel_on_the_cards_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = PipelineHost(WeightCache(tmp_path))
    host.attention_mode = AttentionMode.SAGE  # the machine's kernel, as on a card with SageAttention
    monkeypatch.setattr(attention, "installed_modes", lambda: {AttentionMode.SDPA, AttentionMode.SAGE})
    qwen, wan = get_model("qwen-image"), get_model("wan2.1-t2v-14b")
    for capability, expected in (((8, 6), AttentionMode.SDPA), ((8, 9), AttentionMode.SAGE)):
        host.gpu = LocalGpu(0, "card", capability, 24 << 30, 24 << 30, None)
        assert host._attention_for(REQUEST, qwen) is expected
        assert host._attention_for(REQUEST, wan) is AttentionMode.SAGE  # no rule of its own
    # A job's own kernel wins over the model's.
    forced = replace(REQUEST, overrides=Overrides(attention=AttentionMode.SAGE))
    host.gpu = LocalGpu(0, "card", (8, 6), 24 << 30, 24 << 30, None)
    assert host._attention_for(forced, qwen) is AttentionMode.SAGE
