"""SkyReels V2 diffusion forcing, ChronoEdit and Lucy Edit: their tiny pipelines, the calls WanGP
makes of them (read at deepbeepmeep/Wan2GP@8681e9f7: models/wan/df_handler.py,
diffusion_forcing.py, wan_handler.py, any2video.py), their single files in the original key layout,
and the settings WanFarm refuses for them by name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from models.call_args import configure_scheduler, pipeline_kwargs
from models.catalogue import ModelPreset, Output, catalogue, get_model
from models.image_pipes import pipeline_for
from models.loras import LoraLibrary
from models.request import GenerationRequest
from models.settings import SettingsError, WanGPSettings, resolve
from models.single_file import SingleFileRefused, diffusers_names, load_pipeline
from models.tiny import build_tiny, component_bytes
from models.tiny_wan_offshoots import write_original_single_file
from models.wan_offshoots import GuideRefused, call_extras, read_frames
from models.wangp_definitions import decide, own_weights, parse_definition

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
EDITORS = ["chrono-edit-tiny", "lucy-edit-tiny"]  # skyreels-df-tiny is in test_tiny.TINY


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for model_id in ["skyreels-df-tiny", *EDITORS]:
        folders[model_id] = tmp_path_factory.mktemp(model_id)
        build_tiny(get_model(model_id), folders[model_id])
    return folders


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A start image and a 12-frame source video, each frame brighter than the last."""
    folder = tmp_path_factory.mktemp("inputs")
    Image.new("RGB", (64, 64), (220, 40, 30)).save(folder / "start.png")
    with av.open(str(folder / "source.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return folder


def request_for(preset: ModelPreset, **changes: Any) -> GenerationRequest:
    request = GenerationRequest(
        prompt="change the clothes to red",
        negative_prompt="blurry",
        width=64,
        height=64,
        frames=preset.defaults.video_length if preset.output is Output.VIDEO else 1,
        steps=2,
        guidance_scale=preset.defaults.guidance_scale,
        flow_shift=preset.defaults.flow_shift,
        sample_solver="unipc",
        seed=3,
    )
    return replace(request, **changes)


def load(preset: ModelPreset, folder: Path) -> Any:
    pipe = getattr(diffusers, preset.pipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: Any, preset: ModelPreset, request: GenerationRequest) -> np.ndarray:
    """As the pipeline host calls it: the scheduler, the call over the pipeline, its kwargs."""
    configure_scheduler(pipe, preset, request)
    call = pipeline_for(pipe, preset, request)
    result = call(**pipeline_kwargs(call, preset, request, torch.Generator("cpu").manual_seed(request.seed)))
    return np.asarray(result.frames if preset.output is Output.VIDEO else result.images)


@pytest.mark.parametrize("model_id", EDITORS)
def test_tiny_editors_match_their_presets_to_the_byte_and_rebuild_identically(
    model_id: str, built: dict[str, Path], tmp_path: Path
) -> None:
    preset = get_model(model_id)
    on_disk = component_bytes(built[model_id])
    assert {c.name: c.bytes for c in preset.components} == {
        c.name: on_disk[c.name] for c in preset.components
    }
    build_tiny(preset, tmp_path)
    first = {p.relative_to(built[model_id]): p.read_bytes() for p in built[model_id].rglob("*.safetensors")}
    second = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.safetensors")}
    assert first and first == second


def test_skyreels_df_renders_at_the_models_frame_rate_in_one_window(built: dict[str, Path]) -> None:
    preset = get_model("skyreels-df-tiny")
    request = request_for(preset)
    assert call_extras(preset, request) == {
        "fps": 16,
        "base_num_frames": 17,
        "ar_step": 0,
        "overlap_history": None,
    }
    pipe = load(preset, built["skyreels-df-tiny"])
    at_16 = render(pipe, preset, request)
    assert at_16.shape == (1, 17, 64, 64, 3) and at_16.std() > 0
    # The fps embedding (inject_sample_info) reads 0 at 16 fps, 1 otherwise: the pipeline's own
    # default (24) would render the 1.3B model as another one.
    at_24 = render(pipe, preset.model_copy(update={"fps": 24}), request)
    assert not np.allclose(at_16, at_24)


def test_chrono_edit_returns_the_last_frame_of_its_five_frame_edit_as_an_image(
    built: dict[str, Path], inputs: Path
) -> None:
    preset = get_model("chrono-edit-tiny")
    pipe = load(preset, built["chrono-edit-tiny"])
    request = request_for(preset, image_start=inputs / "start.png")
    image = render(pipe, preset, request)
    assert image.shape == (1, 64, 64, 3) and image.std() > 0
    # The same call on the pipeline itself: 5 frames, of which the image is the last.
    configure_scheduler(pipe, preset, request)
    with Image.open(inputs / "start.png") as start:
        video = pipe(
            image=start.convert("RGB"),
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            height=64,
            width=64,
            num_inference_steps=2,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
        ).frames
    assert video.shape[1] == 5 and np.array_equal(image[0], video[0, -1])


def test_lucy_edit_edits_the_control_video_and_needs_one(built: dict[str, Path], inputs: Path) -> None:
    preset = get_model("lucy-edit-tiny")
    pipe = load(preset, built["lucy-edit-tiny"])
    edited = render(pipe, preset, request_for(preset, video_guide=inputs / "source.mp4"))
    assert edited.shape == (1, 9, 64, 64, 3) and edited.std() > 0
    # The source video conditions the frames: another video, other frames.
    frames = read_frames(inputs / "source.mp4", 12, (64, 64))
    reversed_video = inputs / "reversed.mp4"
    with av.open(str(reversed_video), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for image in reversed(frames):
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    other = render(pipe, preset, request_for(preset, video_guide=reversed_video))
    assert not np.allclose(edited, other)
    with pytest.raises(GuideRefused, match="edits a video: give it as video_guide"):
        render(pipe, preset, request_for(preset))
    with pytest.raises(GuideRefused, match="has 12 frames; this job renders 17"):
        call_extras(preset, request_for(preset, frames=17, video_guide=inputs / "source.mp4"))


@pytest.mark.parametrize("model_id", ["skyreels-df-tiny", *EDITORS])
def test_a_single_file_in_the_original_layout_renders_as_the_folder(
    model_id: str, built: dict[str, Path], inputs: Path, tmp_path: Path
) -> None:
    preset = get_model(model_id)
    folder = built[model_id]
    pipe = load(preset, folder)
    path = write_original_single_file(tmp_path / "model_mbf16.safetensors", pipe.transformer)
    loaded = load_pipeline(preset, path, torch.float32, folder)
    loaded.set_progress_bar_config(disable=True)
    theirs, ours = pipe.transformer.state_dict(), loaded.transformer.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    request = (
        request_for(preset, image_start=inputs / "start.png")
        if preset.task.value == "i2v"
        else request_for(preset)
    )
    if "video_guide" in preset.inputs:
        request = replace(request, video_guide=inputs / "source.mp4")
    # Equal to float rounding: the same weights, but tensors read out of one file buffer sit at other
    # memory alignments, which changes the CPU kernels' summation order (bitwise equal once copied).
    np.testing.assert_allclose(render(loaded, preset, request), render(pipe, preset, request), atol=1e-5)


def test_skyreels_fps_projection_has_its_own_original_names() -> None:
    # diffusers' Wan converter (which SkyReels' from_single_file uses) leaves these names as they are.
    renamed = diffusers_names(
        ["fps_projection.0.weight", "fps_projection.2.bias"], "SkyReelsV2Transformer3DModel"
    )
    assert set(renamed) == {"fps_projection.net.0.proj.weight", "fps_projection.net.2.bias"}


def test_a_file_of_another_network_is_refused_naming_its_keys(built: dict[str, Path], tmp_path: Path) -> None:
    # A ChronoEdit file (image branch) where a SkyReels DF one is expected.
    chrono = load(get_model("chrono-edit-tiny"), built["chrono-edit-tiny"])
    path = write_original_single_file(tmp_path / "other_mbf16.safetensors", chrono.transformer)
    named = r"lacks 5 key\(s\): fps_embedding.*has unknown 18 key\(s\): blocks.0.cross_attn.k_img"
    with pytest.raises(SingleFileRefused, match=named):
        load_pipeline(get_model("skyreels-df-tiny"), path, torch.float32, built["skyreels-df-tiny"])


def settings_problems(folder: Path, **settings: Any) -> list[str]:
    try:
        resolve(WanGPSettings.model_validate(settings), folder)
    except SettingsError as error:
        return error.problems
    return []


def test_wangp_settings_of_these_models_are_read_as_wangp_reads_them(inputs: Path) -> None:
    # SkyReels DF: WanGP's defaults render (its RIFLEx off, one window of 97); 17+20k frames only.
    assert settings_problems(inputs, model_type="sky_df_1.3B", prompt="a fox") == []
    # WanGP's DTT2V renders a length rounded to the nearest 17+20k: its default 81 renders 77.
    for asked, rendered in ((None, 77), (81, 77), (89, 97), (17, 17), (25, 17)):
        given = {"model_type": "sky_df_1.3B"} | ({"video_length": asked} if asked else {})
        [generation] = resolve(WanGPSettings.model_validate(given), inputs).generations
        assert generation.request.frames == generation.metadata["video_length"] == rendered, asked
    [length] = settings_problems(inputs, model_type="sky_df_1.3B", video_length=83)
    assert length.startswith("video_length: 83 is not allowed") and "4k+1" in length
    [mode] = settings_problems(inputs, model_type="sky_df_14B", model_mode=5)
    assert mode.startswith("model_mode: 5 is not supported by WanFarm yet")
    assert settings_problems(inputs, model_type="sky_df_14B", sample_solver="unipc") == []
    # WanGP's step skipping on them has no calibration here: refused, not dropped.
    [tea] = settings_problems(inputs, model_type="sky_df_1.3B", skip_steps_cache_type="tea")
    assert tea.startswith('skip_steps_cache_type: "tea" is not supported by WanFarm yet')
    [solver] = settings_problems(inputs, model_type="sky_df_14B", sample_solver="euler")
    assert solver.startswith("sample_solver: 'euler' is not what WanGP renders for skyreels-v2-df-14b-540p")
    # ChronoEdit: an image from the start image (WanGP's image_mode 1); its other processes refused.
    assert settings_problems(inputs, model_type="chrono_edit", image_start="start.png", image_mode=1) == []
    [process] = settings_problems(inputs, model_type="chrono_edit", image_start="start.png", model_mode=2)
    assert process.startswith("model_mode: 2 is not supported by WanFarm yet")
    # Lucy Edit: the video to edit as video_guide, with WanGP's "UV"; without it, refused by name.
    given = {"model_type": "lucy_edit", "video_guide": "source.mp4", "video_length": 9}
    assert settings_problems(inputs, **given) == []
    assert settings_problems(inputs, **given, video_prompt_type="UV") == []
    missing, letters = settings_problems(inputs, model_type="lucy_edit", video_length=9)
    assert missing == "video_guide: lucy-edit-dev edits a video: give it as video_guide"
    assert letters.startswith('video_prompt_type: "UV" (WanGP\'s default for lucy_edit) is not supported')
    [other] = settings_problems(inputs, **given, video_prompt_type="V")
    assert other.startswith('video_prompt_type: "V" is not supported') and "on Lucy Edit UV" in other
    # A guide given to a model that takes none is refused naming the ones that do.
    [guide] = settings_problems(inputs, model_type="sky_df_1.3B", video_guide="source.mp4")
    assert guide.startswith("video_guide: skyreels-v2-df-1.3b-540p takes no control video")
    assert "lucy-edit-dev" in guide


@pytest.mark.parametrize(
    ("model", "folder"),
    [
        ("skyreels-v2-df-1.3b-540p", "wan_1.3B"),
        ("skyreels-v2-df-14b-540p", "wan"),
        ("skyreels-v2-df-14b-720p", "wan"),
        ("chronoedit-14b", "wan_i2v"),
        ("lucy-edit-dev", "wan_5B"),
    ],
)
def test_each_model_looks_in_wangps_lora_folder_for_it(tmp_path: Path, model: str, folder: str) -> None:
    # WanGP's df_handler takes Wan's get_lora_dir: by size, image-to-video, and the 5B family.
    assert LoraLibrary(tmp_path).folders(get_model(model))[0] == tmp_path / folder


def test_wan_fun_inp_is_served_as_wan_i2v_from_its_own_file_and_its_1_3b_by_its_own_model() -> None:
    definitions = json.loads(FIXTURE.read_text())["definitions"]
    served = decide(parse_definition("fun_inp", definitions["fun_inp"]), catalogue())
    assert served.preset is not None and served.preset.derived_from == "wan2.1-i2v-14b-480p"
    assert own_weights(served.preset)[0] == "wan2.1_Fun_InP_14B_bf16.safetensors"
    # The 1.3B image-to-video network is a catalogue model of its own.
    small = decide(parse_definition("fun_inp_1.3B", definitions["fun_inp_1.3B"]), catalogue())
    assert small.catalogue_own and small.preset is not None and small.preset.id == "wan2.1-fun-inp-1.3b"
