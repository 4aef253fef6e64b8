"""Z-Image Turbo's ControlNets (WanGP architectures z_image_control, z_image_control2,
z_image_control2_1; Wan2GP 8681e9f7 models/z_image) as diffusers' ZImageControlNetModel: each tiny
one, written as WanGP's module files hold it, loads back into the same weights; the tiny
ZImageControlNetPipeline over the tiny Z-Image renders the tiny Z-Image's very image when the
control weighs nothing (WanGP adds the control at control_net_weight), and another image when it
does. WanGP's four control definitions are served (the module beside Z-Image Turbo's folder)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.catalogue import catalogue
from models.qwen_layouts import COMFY_PREFIX
from models.tiny_z_image import build_z_image
from models.tiny_z_image_control import SIZES, build_z_image_control, write_control_module, z_image_controlnet
from models.wangp_definitions import decide, parse_definition
from models.z_image_control import VARIANTS, ControlModuleRefused, load_controlnet
from tests.torch_threads import one_torch_thread

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.mark.parametrize(
    ("architecture", "original", "prefix"),
    [
        ("z_image_control", False, ""),
        ("z_image_control2", False, ""),
        ("z_image_control2_1", True, COMFY_PREFIX),
    ],
)
def test_a_wangp_control_module_loads_into_the_same_weights(
    architecture: str, original: bool, prefix: str, tmp_path: Path
) -> None:
    controlnet = z_image_controlnet(architecture)
    path = write_control_module(tmp_path / "module.safetensors", controlnet, original, prefix)
    loaded = load_controlnet(path, architecture, SIZES, torch.float32)
    expected = controlnet.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in expected.items())


def test_a_module_of_another_architecture_is_refused_naming_its_keys(tmp_path: Path) -> None:
    path = write_control_module(tmp_path / "union1.safetensors", z_image_controlnet("z_image_control"))
    with pytest.raises(ControlModuleRefused, match="not a z_image_control2_1 module"):
        load_controlnet(path, "z_image_control2_1", SIZES, torch.float32)


def test_wangps_control_configs_are_diffusers_modes() -> None:
    # WanGP's configs/z_image_control*.json: 6 blocks over 16 channels; 15 over 33 for the 2.x.
    assert len(VARIANTS["z_image_control"].places) == 6 and VARIANTS["z_image_control"].in_dim == 16
    assert (
        VARIANTS["z_image_control2"].places == VARIANTS["z_image_control2_1"].places == tuple(range(0, 30, 2))
    )
    assert VARIANTS["z_image_control2"].mode == "control_layers"
    assert VARIANTS["z_image_control2_1"].mode == "control_noise_refiner"


def render(pipe: object, scale: float | None) -> np.ndarray:
    """An image of `pipe` (a control image at `scale`; None: a pipeline without control)."""
    call: dict[str, object] = dict(
        prompt="a fox", height=32, width=64, num_inference_steps=2, guidance_scale=0.0, output_type="np"
    )
    if scale is not None:
        call |= {
            "control_image": Image.new("RGB", (64, 32), (220, 40, 40)),
            "controlnet_conditioning_scale": scale,
        }
    return np.asarray(pipe(**call, generator=torch.Generator().manual_seed(3)).images)  # type: ignore[operator]


def test_the_control_adds_to_the_tiny_z_image_at_its_weight() -> None:
    pipe = build_z_image_control()
    plain = build_z_image()(
        prompt="a fox",
        height=32,
        width=64,
        num_inference_steps=2,
        guidance_scale=0.0,
        output_type="np",
        generator=torch.Generator().manual_seed(3),
    ).images
    assert np.array_equal(render(pipe, 0.0), np.asarray(plain))
    assert not np.allclose(render(pipe, 0.75), np.asarray(plain))


@pytest.mark.parametrize("architecture", ["z_image_control2", "z_image_control2_1"])
def test_union_2_renders_through_wangps_refiner_control_at_its_weight(architecture: str) -> None:
    # The call a job with a control image makes (models.z_image_control.control_call): at weight 0
    # the control adds nothing, the refiner's hints included; at 0.75 it steers the image.
    from dataclasses import dataclass

    from models.z_image_control import control_call

    @dataclass
    class Job:
        image_guide: Path | None

    pipe = build_z_image_control(architecture)
    call = control_call(pipe, Job(Path("pose.png")))
    assert call is not pipe  # wrapped: WanGP's refiner control
    plain = render(build_z_image(), None)
    assert np.array_equal(render(call, 0.0), plain)
    assert not np.allclose(render(call, 0.75), plain)


@pytest.mark.parametrize(
    ("model_id", "preset_id", "module", "resolution", "steps"),
    [
        ("z_image_control", "z-image-turbo-control", "Union_bf16", "1024x1024", 9),
        ("z_image_control2", "z-image-turbo-control-2", "Union2_bf16", "1024x1024", 9),
        ("z_image_control2_1", "z-image-turbo-control-2.1", "Union2.1_bf16", "1920x1088", 9),
        # A Tile ControlNet on Union 2.1's architecture, over the 2.1 model's definition.
        ("z_image_control2_1_8s", "z_image_control2_1_8s", "Tile-2.1-2601-8_steps_bf16", "1920x1088", 8),
    ],
)
def test_wangps_control_definitions_are_served_with_their_module_beside_turbo(
    model_id: str, preset_id: str, module: str, resolution: str, steps: int
) -> None:
    data = json.loads(FIXTURE.read_text())["definitions"][model_id]
    verdict = decide(parse_definition(model_id, data), catalogue())
    assert verdict.preset is not None, verdict.reason
    preset = verdict.preset
    assert preset.id == preset_id and preset.pipeline == "ZImageControlNetPipeline"
    assert preset.derived_from == "z-image-turbo" and preset.inputs == ["image_guide"]
    [files] = preset.wangp_modules
    assert files[0].endswith(f"Z-Image-Turbo-Fun-Controlnet-{module}.safetensors")
    assert (preset.defaults.resolution, preset.defaults.num_inference_steps) == (resolution, steps)


def test_a_control_definition_with_an_int8_module_first_or_no_module_is_refused_by_name() -> None:
    data = json.loads(FIXTURE.read_text())["definitions"]["z_image_control2_1_8s"]
    files = data["model"]["modules"][0]
    int8_first = data | {"model": data["model"] | {"modules": [files[::-1]]}}
    verdict = decide(parse_definition("int8_first", int8_first), catalogue())
    assert verdict.preset is None and "an int8 quanto file listed first" in verdict.reason
    bare = data | {"model": {key: v for key, v in data["model"].items() if key != "modules"}}
    verdict = decide(parse_definition("bare", bare), catalogue())
    assert verdict.preset is None and "loads one ControlNet module beside Z-Image Turbo" in verdict.reason


@pytest.mark.parametrize(
    ("model_id", "architecture"),
    [
        ("z-image-turbo-control", "z_image_control"),
        ("z-image-turbo-control-2", "z_image_control2"),
        ("z-image-turbo-control-2.1", "z_image_control2_1"),
    ],
)
def test_the_control_models_weigh_turbo_and_their_controlnet(model_id: str, architecture: str) -> None:
    # The ControlNet at WanGP's config, counted on the meta device, in bf16 beside Turbo's folder.
    from accelerate import init_empty_weights
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    with init_empty_weights():
        controlnet = ZImageControlNetModel(**VARIANTS[architecture].config())
    params = sum(p.numel() for p in controlnet.parameters())
    extra = catalogue()[model_id].weight_bytes - catalogue()["z-image-turbo"].weight_bytes
    assert extra == 2 * params


def test_the_controlnet_adds_to_the_vram_of_the_denoising_step() -> None:
    # It runs beside the transformer at every step (not in turns, as Wan 2.2's experts): at
    # profile 1 (whole models in VRAM, bf16) the control model needs its ControlNet's bytes more.
    from models.memory import JobSize, estimate
    from models.profiles import Profile

    size = JobSize(width=1024, height=1024, frames=1)
    turbo = estimate(catalogue()["z-image-turbo"], Profile.P1, size).vram_bytes
    control = catalogue()["z-image-turbo-control-2.1"]
    [controlnet] = [c for c in control.components if c.name == "controlnet"]
    assert estimate(control, Profile.P1, size).vram_bytes == turbo + controlnet.bytes
