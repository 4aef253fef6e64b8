"""WanGP's prequantized transformer files (GGUF, NVFP4, scaled FP8, NF4; Wan2GP 8681e9f7
shared/qtypes/) load through models.single_file dequantized: the tiny Wan's transformer written in
each format loads into exactly the weights the format's grid holds, within the format's bound of the
unquantized ones, and what cannot be honoured is refused by name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.catalogue import get_model
from models.prequantized import Kind, kind_of_file, kind_of_name
from models.single_file import SingleFileRefused, choose_file, diffusers_names, load_transformer
from models.tiny import build_tiny, write_wan_single_file
from tests import prequantized_files as quant
from tests.torch_threads import one_torch_thread

HF = "https://huggingface.co/DeepBeepMeep/Wan2.1/resolve/main/"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The wan-tiny folder and its transformer's tensors in the original layout."""
    root = tmp_path_factory.mktemp("prequantized")
    build_tiny(get_model("wan-tiny"), root / "wan-tiny")
    path = write_wan_single_file(root / "original.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        return root / "wan-tiny", {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def loaded(folder: Path, path: Path) -> dict[str, torch.Tensor]:
    return dict(load_transformer(get_model("wan-tiny"), path, torch.float32, folder).state_dict())


def in_diffusers_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {new: state[old] for new, old in diffusers_names(list(state)).items()}


def save(stored: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({key: tensor.contiguous() for key, tensor in stored.items()}, str(path))
    return path


@pytest.mark.parametrize(
    ("writer", "kind", "quantized"),
    [
        (quant.scaled_fp8, Kind.FP8, 15),
        (quant.nvfp4, Kind.NVFP4, 3),  # only matrices whose rows split in blocks of 16
        (lambda state: quant.nvfp4(state, tensorcore=False), Kind.NVFP4, 3),
        (quant.nf4, Kind.NF4, 15),
    ],
    ids=["scaled-fp8", "nvfp4-tensorcore", "nvfp4-legacy", "nf4"],
)
def test_a_safetensors_file_loads_the_weights_on_its_grid_exactly(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, writer, kind: Kind, quantized: int
) -> None:
    folder, state = tiny
    stored, snapped = writer(state)
    path = save(stored, tmp_path / f"tiny_{kind}.safetensors")
    assert kind_of_file(path) is kind
    changed = [key for key in snapped if not torch.equal(snapped[key], state[key])]
    assert len(changed) >= quantized  # the file really holds quantized weights
    result = loaded(folder, path)
    expected = in_diffusers_names(snapped)
    assert result.keys() == expected.keys()
    assert [key for key in expected if not torch.equal(result[key], expected[key])] == []


def test_dequantized_weights_stay_within_each_formats_bound(
    tiny: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    _, state = tiny
    # Relative to each row's (fp8) or block's largest value: half a step of the format's grid.
    for writer, bound in ((quant.scaled_fp8, 2**-4), (quant.nvfp4, 0.25 + 2**-4), (quant.nf4, 0.16)):
        _, snapped = writer(state)
        for key in quant.matrices(state):
            error = (snapped[key] - state[key]).abs().max()
            assert error <= bound * state[key].abs().max() + 1e-7, (writer, key)


def test_a_gguf_file_loads_its_q8_0_q4_k_and_f32_tensors(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    folder, state = tiny
    path = tmp_path / "tiny-Q4_K_M.gguf"
    # ComfyUI's GGUF files name the tensors behind the diffusion_model. prefix WanGP strips.
    snapped = quant.write_gguf(state, path, prefix="model.diffusion_model.")
    assert kind_of_file(path) is Kind.GGUF
    assert not torch.equal(snapped["time_embedding.0.weight"], state["time_embedding.0.weight"])  # Q4_K
    assert not torch.equal(snapped["blocks.0.ffn.2.weight"], state["blocks.0.ffn.2.weight"])  # Q8_0
    result = loaded(folder, path)
    expected = in_diffusers_names(snapped)
    assert [key for key in expected if not torch.equal(result[key], expected[key])] == []
    # 5-D, stored flattened with its shape in the metadata, as F32.
    assert torch.equal(result["patch_embedding.weight"], state["patch_embedding.weight"])


def test_q8_0_is_dequantized_in_the_compute_dtype_as_wangp_does(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    from models.prequantized import dequantized_state

    _, state = tiny
    path = tmp_path / "tiny-Q8_0.gguf"
    quant.write_gguf({"blocks.0.ffn.2.weight": state["blocks.0.ffn.2.weight"]}, path)
    half = dequantized_state(path, torch.bfloat16)["blocks.0.ffn.2.weight"]
    full = dequantized_state(path, torch.float32)["blocks.0.ffn.2.weight"]
    assert half.dtype == torch.bfloat16 and half.shape == (24, 32)
    # WanGP's _dequantize_blocks_Q8_0 casts the fp16 scale to bf16 before the product.
    assert torch.allclose(half.float(), full, rtol=2**-7, atol=0)


def test_a_plain_file_is_read_as_before(tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    _, state = tiny
    assert kind_of_file(save(state, tmp_path / "plain_mbf16.safetensors")) is Kind.PLAIN


def test_double_quantized_nf4_is_refused_by_name(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    folder, state = tiny
    stored, _ = quant.nf4(state)
    key = "blocks.0.ffn.2.weight"
    stored[f"{key}.nested_absmax"] = torch.ones(1)
    with pytest.raises(SingleFileRefused, match=r"tiny_nf4.safetensors: a double-quantized NF4 file"):
        loaded(folder, save(stored, tmp_path / "tiny_nf4.safetensors"))


def test_a_prequantized_file_with_leftover_parts_is_refused_naming_them(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    folder, state = tiny
    stored, _ = quant.scaled_fp8(state)
    stored["blocks.0.ffn.2.smooth"] = torch.ones(24)
    with pytest.raises(SingleFileRefused, match=r"has unknown 1 key\(s\): blocks.0.ffn.2.smooth"):
        loaded(folder, save(stored, tmp_path / "tiny_fp8.safetensors"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("wan2.1_t2v_1_3b_nvfp4_lightx2v_4step.safetensors", Kind.NVFP4),
        ("ltx-2.3-22b-distilled-Q4_K_M_light.gguf", Kind.GGUF),
        ("wan22EnhancedLightning_v2I2VFP8HIGH.safetensors", Kind.FP8),
        ("Ideogram4_Transformer_nf4.safetensors", Kind.NF4),
        ("wan2.1_text2video_14B_mbf16.safetensors", Kind.PLAIN),
    ],
)
def test_a_file_name_announces_its_format(name: str, kind: Kind) -> None:
    assert kind_of_name(name) is kind
    # The farm now chooses such files on any machine, the CPU too.
    assert choose_file([HF + name], None, quantize=False, quanto_installed=False).filename == name


def test_nunchaku_files_stay_refused_naming_their_kernels() -> None:
    with pytest.raises(
        SingleFileRefused, match=r"svdq-int4_r256-z-image-turbo.safetensors: .*nunchaku's CUDA"
    ):
        choose_file([HF + "svdq-int4_r256-z-image-turbo.safetensors"], None, False, False)


def test_the_nf4_quant_state_is_the_json_bitsandbytes_writes(
    tiny: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    _, state = tiny
    stored, _ = quant.nf4(state)
    raw = stored["blocks.0.ffn.2.weight.quant_state.bitsandbytes__nf4"]
    assert json.loads(bytes(raw.tolist())) == {
        "quant_type": "nf4",
        "blocksize": 64,
        "dtype": "float32",
        "shape": [24, 32],
    }


def test_a_prequantized_definition_is_sized_dequantized_under_every_profile() -> None:
    from models.catalogue import catalogue
    from models.memory import resident_bytes
    from models.preset import Role
    from models.profiles import Profile
    from models.wangp_definitions import decide, parse_definition

    definition = {"model": {"architecture": "t2v_1.3B", "URLs": [HF + "t2v_1_3b_nvfp4_lightx2v.safetensors"]}}
    preset = decide(parse_definition("mine_nvfp4", definition), catalogue()).preset
    base = get_model("wan2.1-t2v-1.3b")
    assert preset is not None and preset.derived_from == base.id
    (transformer,) = preset.component(Role.TRANSFORMER)
    (base_transformer,) = base.component(Role.TRANSFORMER)
    assert transformer.dequantized and not base_transformer.dequantized
    # Profile 4 quantizes the base's bf16 transformer to int8; the dequantized file stays at 2 bytes.
    spec = Profile.P4.spec
    assert spec.quantize
    assert resident_bytes(transformer, spec) == 2 * resident_bytes(base_transformer, spec)
    assert resident_bytes(transformer, spec) == resident_bytes(base_transformer, Profile.P1.spec)


# WanGP's definitions whose files are prequantized and whose architecture the farm serves.
PREQUANTIZED = (
    "i2v_nvfp4",
    "t2v_1.3B_nvfp4",
    "flux2_dev_nvfp4",
    "ltx2_19B_nvfp4",
    "ltx2_22B_nvfp4",
    "ltx2_22B_distilled_gguf_q4_k_m",
    "ltx2_22B_distilled_gguf_q6_k",
    "ltx2_22B_distilled_gguf_q8_0",
    "i2v_2_2_Enhanced_Lightning_v2",
    "ideogram4_nf4",
)


def test_wangps_prequantized_definitions_pass_the_dry_run_with_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from controller.cli import main
    from models import catalogue as catalogue_module
    from models.preset import Role, Task
    from tests.served_definitions import definitions_folder

    fixture = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
    definitions = json.loads(fixture.read_text())["definitions"]
    Image.new("RGB", (64, 64), (30, 90, 200)).save(tmp_path / "start.png")
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        for model_id, data in definitions.items():
            (folder / f"{model_id}.json").write_text(json.dumps(data))
        verdicts = {verdict.id: verdict for verdict in catalogue_module.definitions()}
        for model_id in PREQUANTIZED:
            preset = verdicts[model_id].preset
            assert preset is not None, verdicts[model_id].reason
            assert all(c.dequantized for c in preset.component(Role.TRANSFORMER)), model_id
            settings = {k: v for k, v in definitions[model_id].items() if k != "model"}
            settings["model_type"] = model_id
            if preset.task is Task.I2V:  # a default cannot name the start image a job brings
                settings["image_start"] = "start.png"
            job = tmp_path / f"{model_id}.json"
            job.write_text(json.dumps(settings))
            assert main(["render", "--dry-run", str(job)]) == 0, capsys.readouterr().err


def test_a_file_of_neither_format_is_refused_as_unreadable(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    folder, _ = tiny
    path = tmp_path / "broken_nvfp4.safetensors"
    path.write_bytes(b"not a model file")
    assert kind_of_file(path) is Kind.PLAIN
    with pytest.raises(SingleFileRefused, match=r"broken_nvfp4.safetensors: not a readable safetensors file"):
        loaded(folder, path)


@pytest.mark.parametrize("kind", [Kind.GGUF, Kind.NVFP4])
def test_the_tiny_ltx2_transformer_loads_from_its_gguf_and_nvfp4_files(kind: Kind, tmp_path: Path) -> None:
    # WanGP's LTX-2 GGUF and NVFP4 definitions: Lightricks' layout behind model.diffusion_model.
    from models.tiny_ltx2 import write_ltx2_single_file

    preset = get_model("ltx2-tiny")
    build_tiny(preset, tmp_path / "ltx2-tiny")
    with safe_open(str(write_ltx2_single_file(tmp_path / "plain.safetensors")), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if kind is Kind.GGUF:
        path = tmp_path / "ltx2-tiny-Q8_0.gguf"
        snapped = quant.write_gguf(state, path)
    else:
        stored, snapped = quant.nvfp4(state)
        path = save(stored, tmp_path / "ltx2-tiny-nvfp4_diffusion_model.safetensors")
    assert kind_of_file(path) is kind
    assert any(not torch.equal(snapped[key], state[key]) for key in state)
    result = dict(load_transformer(preset, path, torch.float32, tmp_path / "ltx2-tiny").state_dict())
    reference = dict(
        load_transformer(
            preset, save(snapped, tmp_path / "snapped.safetensors"), torch.float32, tmp_path / "ltx2-tiny"
        ).state_dict()
    )
    assert result.keys() == reference.keys()
    assert [key for key in reference if not torch.equal(result[key], reference[key])] == []


def test_fp8_tensors_outside_linear_layers_are_cast_as_wangp_casts_them(
    tiny: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    folder, state = tiny
    stored, _ = quant.scaled_fp8(state)
    # A convolution's fp8 weight keeps no scale in WanGP (_cast_non_linear_float8_params drops it).
    stored["patch_embedding.weight"] = state["patch_embedding.weight"].to(torch.float8_e4m3fn)
    stored["patch_embedding.scale_weight"] = torch.tensor(2.0)
    stored["blocks.0.modulation"] = state["blocks.0.modulation"].to(torch.float8_e4m3fn)
    result = loaded(folder, save(stored, tmp_path / "tiny_fp8_scaled.safetensors"))
    assert torch.equal(result["patch_embedding.weight"], stored["patch_embedding.weight"].float())
    assert torch.equal(result["blocks.0.scale_shift_table"], stored["blocks.0.modulation"].float())
