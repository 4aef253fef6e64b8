"""Transformers from single-file checkpoints in the original Wan key layout (models.single_file):
which of a definition's files is loaded on which machine, and that a file in that layout renders
what the same weights render from the diffusers folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import get_model
from models.gpus import arch_caps
from models.single_file import (
    SINGLE_FILE_FAMILIES,
    SingleFileRefused,
    choose_file,
    load_pipeline,
    load_transformer,
)
from models.tiny import build_tiny, write_wan_single_file
from tests.tiny_requests import tiny_wan_request

# WanGP's defaults/t2v.json at commit 8681e9f7: the bf16 file first, then its two int8 files.
HF = "https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/"
T2V_URLS = [
    HF + "wan2.1_text2video_14B_mbf16.safetensors",
    HF + "wan2.1_text2video_14B_quanto_mbf16_int8.safetensors",
    HF + "wan2.1_text2video_14B_quanto_mfp16_int8.safetensors",
]
AMPERE = arch_caps((8, 6))
TURING = arch_caps((7, 5))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wan-tiny diffusers folder and its transformer as one file in the original layout."""
    root = tmp_path_factory.mktemp("single-file")
    build_tiny(get_model("wan-tiny"), root / "wan-tiny")
    return root / "wan-tiny", write_wan_single_file(root / "wan-tiny_text2video.safetensors")


def test_tiny_file_is_in_the_original_layout(tiny: tuple[Path, Path]) -> None:
    _, path = tiny
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    assert {
        "head.head.weight",
        "head.modulation",
        "blocks.0.self_attn.q.weight",
        "time_embedding.0.weight",
    } <= keys
    assert not any("attn1" in key or "condition_embedder" in key for key in keys)


def test_single_file_loads_the_same_weights_as_the_folder(tiny: tuple[Path, Path]) -> None:
    folder, path = tiny
    loaded = load_transformer(get_model("wan-tiny"), path, torch.float32, folder).state_dict()
    reference = diffusers.WanTransformer3DModel.from_pretrained(folder / "transformer").state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_in_a_half_type_a_file_keeps_in_float32_what_the_folder_does(
    tiny: tuple[Path, Path], dtype: torch.dtype
) -> None:
    # Wan's time embedder, norms and modulation tables: from_pretrained keeps them in float32, so a
    # file loads them so too, with the file's own values (not cast down and back up).
    folder, path = tiny
    loaded = load_transformer(get_model("wan-tiny"), path, dtype, folder).state_dict()
    reference = diffusers.WanTransformer3DModel.from_pretrained(
        folder / "transformer", dtype=dtype
    ).state_dict()
    kept = [key for key, tensor in reference.items() if tensor.dtype == torch.float32]
    assert "scale_shift_table" in kept and "condition_embedder.time_embedder.linear_1.weight" in kept
    assert {key: tensor.dtype for key, tensor in loaded.items()} == {
        key: tensor.dtype for key, tensor in reference.items()
    }
    assert [key for key in reference if not torch.equal(loaded[key], reference[key])] == []


def test_single_file_renders_the_bytes_the_folder_renders(tiny: tuple[Path, Path]) -> None:
    folder, path = tiny
    preset = get_model("wan-tiny")
    from_file = _render(load_pipeline(preset, path, torch.float32, folder))
    from_folder = _render(diffusers.WanPipeline.from_pretrained(folder))
    assert from_file.tobytes() == from_folder.tobytes()
    assert from_file.std() > 0  # frames, not a constant


def test_a_file_with_missing_and_unknown_keys_is_refused_naming_them(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, path = tiny
    with safe_open(str(path), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, not a dict)
    del state["blocks.1.ffn.2.weight"]
    state["blocks.0.self_attn.extra.weight"] = torch.zeros(2)
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(SingleFileRefused) as refused:
        load_transformer(get_model("wan-tiny"), broken, torch.float32, folder)
    message = str(refused.value)
    # The missing key in diffusers' name, the unknown one as the file spells it.
    assert "blocks.1.ffn.net.2.weight" in message and "blocks.0.self_attn.extra.weight" in message


def test_an_int8_quanto_file_is_refused_on_the_cpu(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = tiny
    quantized = tmp_path / "tiny_quanto_mbf16_int8.safetensors"
    save_file(
        {"blocks.0.self_attn.q.weight._data": torch.zeros(2, dtype=torch.int8), "x._scale": torch.ones(1)},
        str(quantized),
    )
    with pytest.raises(SingleFileRefused, match=r"tiny_quanto_mbf16_int8.safetensors: an int8 quanto.*CPU"):
        load_transformer(get_model("wan-tiny"), quantized, torch.float32, folder)


def test_a_family_without_single_file_loading_is_refused(tiny: tuple[Path, Path]) -> None:
    folder, path = tiny
    assert "ltx" not in SINGLE_FILE_FAMILIES  # LTX-Video 0.9: its WanGP files are not read yet
    with pytest.raises(
        SingleFileRefused, match=r"ltx-tiny \(ltx, LTXPipeline\): single-file transformers load only"
    ):
        load_transformer(get_model("ltx-tiny"), path, torch.float32, folder)


@pytest.mark.parametrize(
    ("caps", "quantize", "installed", "expected", "quantized", "dtype"),
    [
        (None, True, True, "wan2.1_text2video_14B_mbf16.safetensors", False, "fp32"),
        (AMPERE, False, True, "wan2.1_text2video_14B_mbf16.safetensors", False, "bf16"),
        (TURING, False, True, "wan2.1_text2video_14B_mbf16.safetensors", False, "fp16"),
        (AMPERE, True, True, "wan2.1_text2video_14B_quanto_mbf16_int8.safetensors", True, "bf16"),
        (TURING, True, True, "wan2.1_text2video_14B_quanto_mfp16_int8.safetensors", True, "fp16"),
        # Without mmgp the profile's quantization cannot take a prequantized file.
        (AMPERE, True, False, "wan2.1_text2video_14B_mbf16.safetensors", False, "bf16"),
    ],
)
def test_choose_file_picks_what_wangp_loads(
    caps: Any, quantize: bool, installed: bool, expected: str, quantized: bool, dtype: str
) -> None:
    choice = choose_file(T2V_URLS, caps, quantize=quantize, quanto_installed=installed)
    assert (choice.filename, choice.quantized, choice.dtype) == (expected, quantized, dtype)


def test_choose_file_honours_the_architecture_dtype() -> None:
    choice = choose_file(T2V_URLS, AMPERE, quantize=True, quanto_installed=True, arch_dtype="fp16")
    assert choice.filename == "wan2.1_text2video_14B_quanto_mfp16_int8.safetensors"


@pytest.mark.parametrize(
    ("caps", "quantize", "installed", "why"),
    [
        (None, True, True, "runs on the CPU"),
        (AMPERE, True, False, "not installed"),
        (AMPERE, False, True, "keeps the transformer unquantized"),
    ],
)
def test_an_int8_only_definition_is_refused_by_name(
    caps: Any, quantize: bool, installed: bool, why: str
) -> None:
    urls = [HF + "wan2.1_FLF2V_720p_14B_quanto_int8.safetensors"]
    with pytest.raises(SingleFileRefused, match=f"wan2.1_FLF2V_720p_14B_quanto_int8.safetensors: .*{why}"):
        choose_file(urls, caps, quantize=quantize, quanto_installed=installed)


def test_fp8_files_are_chosen_as_plain_files() -> None:
    # models.prequantized dequantizes them at load: no int8 quantization applies to them.
    choice = choose_file([HF + "model_fp8_e4m3fn.safetensors"], AMPERE, quantize=True, quanto_installed=True)
    assert (choice.filename, choice.quantized) == ("model_fp8_e4m3fn.safetensors", False)
    assert choice.dtype == "bf16"


def _render(pipe: Any) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    preset, request = get_model("wan-tiny"), tiny_wan_request()
    configure_scheduler(pipe, preset, request)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    frames = np.asarray(pipe(**pipeline_kwargs(pipe, preset, request, generator)).frames)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
