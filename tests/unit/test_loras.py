"""LoRAs as WanGP settings name them: the multiplier syntax of docs/LORAS.md in deepbeepmeep/Wan2GP
(commit 8681e9f7) as shared/utils/loras_mutipliers.py reads it (parse_loras_multipliers,
expand_slist, get_model_switch_steps) and its folder layout (each family handler's get_lora_dir),
read without torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.catalogue import get_model
from models.loras import (
    ONE_PHASE,
    LoraLibrary,
    LoraNotFound,
    LoraPhases,
    LoraRequest,
    lora_file_name,
    model_phases,
    parse_loras,
)

TWO = LoraPhases(2, (875.0,))  # Wan 2.2 t2v's two guidance phases
THREE = LoraPhases(3, (875.0, 500.0))


def _weights(request: LoraRequest, starts: tuple[int, ...] = ()) -> list[float]:
    return list(request.schedule(starts))


def test_one_multiplier_per_lora_in_order_and_a_missing_one_is_1() -> None:
    a, b, c = parse_loras(["a.safetensors", "b.safetensors", "c.safetensors"], "1.2\n0.8", 4)
    assert (_weights(a), _weights(b), _weights(c)) == ([1.2] * 4, [0.8] * 4, [1.0] * 4)
    assert (a.name, b.multipliers, c.multipliers) == ("a.safetensors", "0.8", "1")


def test_comment_lines_and_the_accelerator_bar_separate_like_spaces() -> None:
    a, b = parse_loras(["a", "b"], "# accelerators first\n0.5|\n  2  ", 2)
    assert (_weights(a), _weights(b)) == ([0.5, 0.5], [2.0, 2.0])


def test_a_comma_list_is_spread_over_the_steps_as_wangp_steps_through_it() -> None:
    # Its guide says 10 steps each for 30; expand_slist adds 0.1 a step in floats, and ten of them
    # make 0.9999999999999999: step 10 keeps the first value (shared/utils/loras_mutipliers.py).
    (lora,) = parse_loras(["a"], "0.9,0.8,0.7", 30)
    assert _weights(lora) == [0.9] * 11 + [0.8] * 9 + [0.7] * 10
    (short,) = parse_loras(["a"], "1,0", 3)
    assert _weights(short) == [1.0, 1.0, 0.0]


def test_phases_give_each_guidance_phase_its_own_values() -> None:
    high, low = parse_loras(["high", "low"], "1;0 0;1", 6, TWO)
    assert _weights(high, (2,)) == [1, 1, 0, 0, 0, 0]
    assert _weights(low, (2,)) == [0, 0, 1, 1, 1, 1]


def test_a_list_inside_a_phase_is_spread_over_that_phase_only() -> None:
    (lora,) = parse_loras(["a"], "0.9,0.8;1.2,1.1,1", 8, TWO)
    assert _weights(lora, (2,)) == [0.9, 0.8, 1.2, 1.2, 1.1, 1.1, 1.0, 1.0]
    assert lora.weight_at(3, (2,)) == 1.2


def test_a_list_without_phases_runs_over_all_steps_whichever_phase_runs_them() -> None:
    # The guide's third LoRA of its 6-step example: 0.8 for steps 1-2, 0.7 for 3-4, 0.5 for 5-6.
    (lora,) = parse_loras(["a"], "0.8,0.7,0.5", 6, TWO)
    assert _weights(lora, (3,)) == [0.8, 0.8, 0.7, 0.7, 0.5, 0.5]


def test_a_phase_that_never_starts_leaves_its_steps_to_the_one_before() -> None:
    (lora,) = parse_loras(["a"], "1;0", 4, TWO)
    assert _weights(lora) == _weights(lora, (4,)) == [1.0] * 4


def test_three_phases_take_three_values_and_widen_two_at_the_low_noise_experts_side() -> None:
    (three,) = parse_loras(["a"], "1;0.5;0", 6, THREE)
    assert _weights(three, (2, 4)) == [1, 1, 0.5, 0.5, 0, 0]
    # parse_loras_multipliers: "x;y" on 3 phases is x;y;y, or x;x;y with model_switch_phase 2.
    (after_phase_1,) = parse_loras(["a"], "1;0", 6, THREE)
    (after_phase_2,) = parse_loras(["a"], "1;0", 6, LoraPhases(3, (875.0, 500.0), switch_phase=2))
    assert _weights(after_phase_1, (2, 4)) == [1, 1, 0, 0, 0, 0]
    assert _weights(after_phase_2, (2, 4)) == [1, 1, 1, 1, 0, 0]


def test_a_phase_starts_at_the_first_timestep_at_or_below_its_noise_level() -> None:
    # get_model_switch_steps: the first step with t <= switch_threshold (or switch_threshold2).
    timesteps = [999.0, 937.5, 875.0, 700.0, 500.00003, 500.0, 250.0]
    assert THREE.start_steps(timesteps) == (2, 5)
    assert LoraPhases(2, (0.0,)).start_steps(timesteps) == (7,)  # never: the phase does not start


@pytest.mark.parametrize(
    ("activated", "multipliers", "phases", "named"),
    [
        (["a", "b"], "1 x", ONE_PHASE, "'x' is not a number"),
        (["a"], "1,,0", ONE_PHASE, "'' is not a number"),
        (["a"], "nan", ONE_PHASE, "'nan' is not a finite number"),
        (["a"], "1 0.5", ONE_PHASE, "2 multipliers for 1 LoRA"),
        (["a"], "1;0", ONE_PHASE, "gives 2 phases separated by ';', but this job runs 1 guidance phase"),
        (["a"], "1;0;1", TWO, "gives 3 phases separated by ';', but this job runs 2 guidance phase"),
        (["a", "b", "c"], "1|2|3", ONE_PHASE, "one '|'"),
        (["a", "a"], "", ONE_PHASE, "names a twice"),
        (["/etc/passwd"], "", ONE_PHASE, "absolute path"),
        (["C:\\loras\\x.safetensors"], "", ONE_PHASE, "absolute path"),
        (["../x.safetensors"], "", ONE_PHASE, "leaves the LoRA folder"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_problem(
    activated: list[str], multipliers: str, phases: LoraPhases, named: str
) -> None:
    with pytest.raises(ValueError, match=named.replace("|", r"\|").replace("(", r"\(")):
        parse_loras(activated, multipliers, 4, phases)


def test_an_error_names_the_entry_and_its_lora() -> None:
    with pytest.raises(ValueError, match=r"entry 2 \('0,x'.*for style\.safetensors\)"):
        parse_loras(["fast.safetensors", "style.safetensors"], "1 0,x", 4)


def test_a_step_or_phase_outside_the_schedule_is_refused() -> None:
    (lora,) = parse_loras(["a"], "1;0", 2, TWO)
    with pytest.raises(ValueError, match="step 2"):
        lora.weight_at(2)
    with pytest.raises(ValueError, match="2 phase starts for 2 phase"):
        lora.weight_at(0, (1, 1))


def test_two_expert_models_have_two_phases() -> None:
    assert model_phases(get_model("wan2.2-t2v-a14b")) == 2
    assert model_phases(get_model("wan2.1-t2v-14b")) == model_phases(get_model("flux-tiny")) == 1


def test_an_entry_names_a_file_by_name_sub_path_or_download_url() -> None:
    assert str(lora_file_name("style.safetensors")) == "style.safetensors"
    assert str(lora_file_name("sub\\style.safetensors")) == "sub/style.safetensors"
    url = "https://huggingface.co/Kijai/WanVideo_comfy/resolve/main/Wan21%20lightx2v.safetensors"
    assert str(lora_file_name(url)) == "Wan21 lightx2v.safetensors"
    assert str(lora_file_name(url + "|accel")) == "accel/Wan21 lightx2v.safetensors"


@pytest.mark.parametrize(
    ("model", "folder"),
    [
        ("wan-tiny", "wan"),
        ("wan2.1-t2v-14b", "wan"),
        ("wan2.1-t2v-1.3b", "wan_1.3B"),
        ("wan2.1-i2v-14b-480p", "wan_i2v"),
        ("wan2.2-i2v-a14b", "wan"),  # WanGP keeps Wan 2.2 i2v LoRAs with the t2v ones
        ("wan2.2-ti2v-5b", "wan_5B"),
        ("hunyuan-video-t2v-13b", "hunyuan"),
        ("ltx-video-13b", "ltxv"),
        ("flux.1-dev", "flux"),
        ("qwen-image", "qwen"),
    ],
)
def test_each_model_looks_in_wangps_folder_for_its_family(tmp_path: Path, model: str, folder: str) -> None:
    assert LoraLibrary(tmp_path).folders(get_model(model))[0] == tmp_path / folder


def _write(path: Path, content: bytes = b"lora weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_lora_is_found_with_its_sha256(tmp_path: Path) -> None:
    path = _write(tmp_path / "flux" / "style.safetensors")
    found = LoraLibrary(tmp_path).find("style.safetensors", get_model("flux-tiny"))
    assert found.path == path
    assert found.sha256 == hashlib.sha256(b"lora weights").hexdigest()
    assert found.bytes == len(b"lora weights")


@pytest.mark.parametrize(
    "layout",
    ["loras/flux/style.safetensors", "loras_flux/style.safetensors"],
    ids=["a WanGP folder holding loras/", "the layout before loras/ held every family"],
)
def test_a_wangp_install_folder_is_searched_too(tmp_path: Path, layout: str) -> None:
    path = _write(tmp_path / layout)
    assert LoraLibrary(tmp_path).find("style.safetensors", get_model("flux-tiny")).path == path


def test_a_url_entry_finds_the_downloaded_file_by_its_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "wan" / "lightx2v.safetensors")
    entry = "https://huggingface.co/x/y/resolve/main/lightx2v.safetensors"
    assert LoraLibrary(tmp_path).find(entry, get_model("wan-tiny")).path == path


def test_a_missing_lora_names_the_file_and_the_folders_searched(tmp_path: Path) -> None:
    _write(tmp_path / "flux" / "style.safetensors")  # another family's folder does not count
    with pytest.raises(LoraNotFound) as caught:
        LoraLibrary(tmp_path).find("style.safetensors", get_model("wan-tiny"))
    message = str(caught.value)
    assert "'style.safetensors'" in message and "wan-tiny" in message
    assert str(tmp_path / "wan") in message and str(tmp_path / "loras" / "wan") in message


def test_the_sha256_is_read_once_per_size_and_mtime(tmp_path: Path) -> None:
    path = _write(tmp_path / "wan" / "a.safetensors", b"first")
    library = LoraLibrary(tmp_path)
    first = library.sha256(path)
    stat = path.stat()
    # Same size, same mtime: the cached digest stands, so the file was not read again.
    path.write_bytes(b"other")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert library.sha256(path) == first
    path.write_bytes(b"longer content")
    assert library.sha256(path) == hashlib.sha256(b"longer content").hexdigest()


def test_the_lora_module_loads_without_torch() -> None:
    code = "import sys, models.loras; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
