"""Wan VACE: WanGP's VACE definitions (at deepbeepmeep/Wan2GP@8681e9f7, the fixture) served or
refused by name (the VACE module over its backbone, over a finetune's file, over Wan 2.2's two
experts), its video_prompt_type letters rendered or refused, its guide files read as WanGP
reads them, and its transformer loaded from WanGP's two files (the t2v backbone and the VACE
module) into the same weights as the tiny VACE's folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image

from models.catalogue import catalogue, get_model
from models.single_file import SingleFileRefused, load_transformer
from models.tiny import build_tiny
from models.tiny_vace import MODULE_PREFIXES, write_vace_files
from models.vace import GuideUnreadable, guide_problems, read_video, vace_kwargs
from models.vace_letters import implied_letters
from models.vace_modules import module_problem
from models.wangp_definitions import decide, parse_definition, with_references
from models.wangp_keys import Reading, model_facts, refusals
from tests.unit.test_tiny import default_request

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"


def verdict(model_id: str) -> Any:
    # As the catalogue reads a folder of definitions: a model type in place of a file list is followed.
    facts = json.loads(FIXTURE.read_text())["definitions"]
    definitions = with_references({key: parse_definition(key, data) for key, data in facts.items()})
    return decide(definitions[model_id], catalogue())


@pytest.mark.parametrize(
    ("model_id", "preset_id"),
    [
        ("vace_1.3B", "wan2.1-vace-1.3b"),
        ("vace_14B", "wan2.1-vace-14b"),
        ("vace_fun_14B_2_2", "wan2.2-vace-fun-a14b"),
    ],
)
def test_wangps_vace_models_are_the_catalogues_vace_presets(model_id: str, preset_id: str) -> None:
    served = verdict(model_id)
    assert served.preset is not None and served.preset.id == preset_id and served.catalogue_own
    assert served.preset.pipeline == "WanVACEPipeline" and served.preset.family == "wan"
    assert served.preset.inputs == ["video_guide", "video_mask", "image_refs"]


@pytest.mark.parametrize(
    ("model_id", "over", "base"),
    [
        # A finetune's file (named by its model type, or listed) with the module merged in.
        ("vace_14B_fusionix", "t2v_fusionix", "wan2.1-vace-14b"),
        ("vace_14B_sf", "vace_14B_sf", "wan2.1-vace-14b"),
        # Wan 2.2 t2v's two experts, the module merged into each, over VACE Fun's folder: WanGP's
        # vace_14B_2_2 config is VACE 14B's, as Fun's is (models/wan/configs at 8681e9f7).
        ("vace_14B_2_2", "t2v_2_2", "wan2.2-vace-fun-a14b"),
        ("vace_14B_cocktail_2_2", "t2v_2_2", "wan2.2-vace-fun-a14b"),
    ],
)
def test_the_vace_module_over_other_weights_is_served_from_those_files(
    model_id: str, over: str, base: str
) -> None:
    facts = json.loads(FIXTURE.read_text())["definitions"]
    preset = verdict(model_id).preset
    assert preset is not None and (preset.derived_from, preset.pipeline) == (base, "WanVACEPipeline")
    assert preset.inputs == ["video_guide", "video_mask", "image_refs"]
    weights = facts[over]["model"]
    assert preset.wangp_weights == weights["URLs"] and preset.wangp_weights2 == weights.get("URLs2", [])
    # vace_14B's one module, in its three precisions: WanGP's "modules": ["vace_14B"].
    assert preset.wangp_modules == facts["vace_14B"]["model"]["modules"]
    own = facts[model_id]
    assert (preset.defaults.num_inference_steps, preset.defaults.flow_shift) == (
        own.get("num_inference_steps", get_model(base).defaults.num_inference_steps),
        own["flow_shift"],
    )
    assert preset.builtin_loras == own["model"].get("loras", [])


def test_the_module_over_its_backbone_loads_no_module_the_folder_holds_it() -> None:
    # vace_14B_cocktail: Wan 2.1 t2v's files (the VACE repo's backbone) and LoRAs.
    preset = verdict("vace_14B_cocktail").preset
    assert preset is not None and preset.derived_from == "wan2.1-vace-14b" and preset.wangp_modules == []


@pytest.mark.parametrize(
    ("model_id", "reason"),
    [
        # Three guidance phases whose second runs the high-noise expert at another scale, and a
        # model key forcing the phase count.
        ("vace_14B_lightning_3p_2_2", "model setting(s) not supported yet: lock_guidance_phases"),
        ("vace_standin_14B", "architecture 'vace_standin_14B' is not supported yet"),
    ],
)
def test_other_vace_definitions_are_refused_naming_what_is_missing(model_id: str, reason: str) -> None:
    refused = verdict(model_id)
    assert refused.preset is None and refused.reason.startswith(reason), refused.reason


def test_a_module_named_by_a_definition_not_given_is_refused() -> None:
    # vace_14B_fusionix read alone: neither t2v_fusionix's files nor vace_14B's module are known.
    facts = json.loads(FIXTURE.read_text())["definitions"]
    names = ("vace_14B_fusionix", "t2v_fusionix")
    definitions = with_references({key: parse_definition(key, facts[key]) for key in names})
    refused = decide(definitions["vace_14B_fusionix"], catalogue())
    assert refused.preset is None and refused.reason == (
        "the VACE module (vace_14B): the files of a definition not given cannot be found"
    )
    # Over VACE Fun's own experts, which hold VACE blocks, the module would be merged twice.
    fun: dict[str, object] = {"architecture": "vace_14B_2_2", "modules": ["vace_14B"]}
    fun |= {"URLs": "vace_fun_14B_2_2", "URLs2": "vace_fun_14B_2_2"}
    given = {key: parse_definition(key, facts[key]) for key in ("vace_14B", "vace_fun_14B_2_2")}
    twice = with_references(given | {"fun_vace": parse_definition("fun_vace", {"model": fun})})["fun_vace"]
    assert decide(twice, catalogue()).reason.startswith(
        "the VACE module over the files of vace_14B_2_2's own VACE model, which hold VACE blocks already"
    )


@pytest.mark.parametrize(
    ("urls", "module", "says"),
    [
        (
            ["https://x/mine_quanto_bf16_int8.safetensors"],
            "wan2.1_Vace_14B_module_mbf16.safetensors",
            "mine_",
        ),
        (
            ["https://x/mine_bf16.safetensors"],
            "wan2.1_Vace_14B_module_quanto_mbf16_int8.safetensors",
            "wan2.1_",
        ),
        (
            ["https://x/mine_fp8.safetensors"],
            "wan2.1_Vace_14B_module_mbf16.safetensors",
            "a prequantized fp8",
        ),
    ],
)
def test_files_the_module_cannot_merge_into_are_refused_by_name(
    urls: list[str], module: str, says: str
) -> None:
    # The module merges into plain tensors: the first file of each list loads, unquantized.
    vace = {"model": {"architecture": "vace_14B", "URLs": "t2v", "modules": [[f"https://x/{module}"]]}}
    mine = {"model": {"architecture": "vace_14B", "URLs": urls, "modules": ["vace_14B"]}}
    given = {key: parse_definition(key, data) for key, data in (("vace_14B", vace), ("mine", mine))}
    refused = decide(with_references(given)["mine"], catalogue())
    assert refused.preset is None and says in refused.reason, refused.reason


def test_only_the_vace_module_of_its_size_is_merged() -> None:
    assert module_problem("vace_14B", ["vace_14B"], "t2v") == ""
    assert module_problem("vace_1.3B", ["wan2.1_Vace_1_3B_module.safetensors"], "t2v_1.3B") == ""
    assert module_problem("vace_1.3B", ["vace_1.3B"], "t2v") == (
        "the VACE module of vace_1.3B is made for 't2v_1.3B'; 't2v' is another size"
    )
    # Over a finetune's files: the module's own files must be known.
    assert module_problem("vace_14B", ["vace_14B"], "t2v_fusionix", [["https://x/m.safetensors"]]) == ""
    assert module_problem("vace_14B", ["vace_14B"], "", [[]]).endswith("definition not given cannot be found")
    # Any other module is refused by name, on a VACE architecture as on any other.
    assert module_problem("vace_14B", ["vace_14B", "lynx"], "t2v") == (
        "modules merged into the model are not supported yet: lynx"
    )
    assert module_problem("t2v", ["vace_14B"], "t2v").startswith("modules merged into the model")
    # The module of the architecture's own size only: 1.3B's blocks do not fit the 14B model.
    assert module_problem("vace_14B", ["wan2.1_Vace_1_3B_module.safetensors"], "t2v") == (
        "modules merged into the model are not supported yet: wan2.1_Vace_1_3B_module.safetensors"
    )
    assert module_problem("vace_14B", ["wan2.1_Vace_14B_module_mbf16.safetensors"], "t2v") == ""
    assert module_problem("vace_14B", [], "t2v") == (
        "vace_14B over the weights of 't2v' needs the VACE module; it names none"
    )


def test_video_prompt_type_letters_are_rendered_or_refused_by_name() -> None:
    def refused(settings: dict[str, object], model_type: str = "vace_14B") -> list[str]:
        facts = model_facts([model_type])
        reading = Reading(model_type, facts, settings, {"video_length": 81}, video=True, fps=16)
        return [line for line in refusals(reading) if line.startswith("video_prompt_type")]

    files = {"video_guide": "g.mp4", "video_mask": "m.mp4", "image_refs": ["r.png"]}
    assert refused({"video_prompt_type": "VAI", **files, "remove_background_images_ref": 0}) == []
    assert refused({"video_prompt_type": "VA", "video_guide": "g.mp4", "video_mask": "m.mp4"}) == []
    # Files alone imply their letters, as WanGP's API adds them.
    assert refused({"video_guide": "g.mp4"}) == []
    assert implied_letters("", {"video_guide": "g.mp4", "video_mask": "m.mp4"}.get) == "VA"
    wrongs: list[dict[str, object]] = [
        {"video_prompt_type": "PV", "video_guide": "g.mp4"},  # pose extraction
        {"video_prompt_type": "VA", "video_guide": "g.mp4"},  # no mask file
        {"video_prompt_type": "I", "video_guide": "g.mp4", "image_refs": ["r.png"]},  # a file without V
        # WanGP removes reference images' backgrounds by default: WanFarm cannot.
        {"video_prompt_type": "I", "image_refs": ["r.png"]},
        {"image_refs": ["r.png"], "remove_background_images_ref": 1},
    ]
    for wrong in wrongs:
        (line,) = refused(wrong)
        assert line.startswith("video_prompt_type: ") and "on VACE letters of V" in line, line
    # A model without guides renders no letter.
    assert refused({"video_prompt_type": "V", "video_guide": "g.mp4"}, "t2v") != []
    # The control video's keys at WanGP's no-op values are accepted with V and A.
    reading = Reading(
        "vace_14B",
        model_facts(["vace_14B"]),
        {
            "video_prompt_type": "VA",
            **files,
            "control_net_weight": 1,
            "mask_expand": 0,
            "keep_frames_video_guide": "",
        },
        {"video_length": 81},
        video=True,
        fps=16,
    )
    assert [line for line in refusals(reading) if not line.startswith("video_prompt_type")] == []


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        stream.options = {"crf": "0"}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def grey(level: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    return np.full((*size, 3), level, dtype=np.uint8)


def test_a_guide_is_read_at_the_models_frame_rate_and_size(tmp_path: Path) -> None:
    # 32 fps source, each frame its own grey level: at 16 fps every second frame is shown.
    path = write_video(tmp_path / "g.mp4", [grey(8 * i) for i in range(20)], fps=32)
    frames = read_video(path, 9, (48, 16), 16, "video_guide")
    assert [frame.size for frame in frames] == [(48, 16)] * 9
    levels = [int(np.asarray(frame).mean().round()) for frame in frames]
    # Source levels are 8 apart; the codec's colour conversion moves them by a unit or two.
    assert all(abs(level - 16 * i) <= 2 for i, level in enumerate(levels)), levels
    with pytest.raises(
        GuideUnreadable,
        match=r"video_guide: g.mp4 holds 20 frames at 32 fps, about 10 at 16 fps; the video needs 13",
    ):
        read_video(path, 13, (48, 16), 16, "video_guide")
    # A job is refused before it runs, from the file's header.
    preset = get_model("wan-vace-tiny")
    short = default_request(preset, video_guide=path, frames=13)
    assert guide_problems(preset, short) == [
        "video_guide: g.mp4 holds 20 frames at 32 fps, about 10 at 16 fps; the video needs 13"
    ]
    assert guide_problems(preset, default_request(preset, video_guide=path)) == []
    (tmp_path / "not.mp4").write_bytes(b"no video")
    with pytest.raises(GuideUnreadable, match=r"video_mask: not\.mp4 is not a readable video"):
        read_video(tmp_path / "not.mp4", 9, (48, 16), 16, "video_mask")


def test_the_mask_is_thresholded_as_wangp_does(tmp_path: Path) -> None:
    preset = get_model("wan-vace-tiny")
    frames = [np.concatenate([grey(120, (64, 32)), grey(140, (64, 32))], axis=1)] * 9
    guide = write_video(tmp_path / "g.mp4", [grey(90, (64, 64))] * 9, fps=16)
    mask = write_video(tmp_path / "m.mp4", frames, fps=16)
    request = default_request(preset, video_guide=guide, video_mask=mask)
    kwargs = vace_kwargs(preset, request)
    assert len(kwargs["video"]) == len(kwargs["mask"]) == 9
    values = np.asarray(kwargs["mask"][0])
    assert set(np.unique(values[:, :30])) == {0} and set(np.unique(values[:, 34:])) == {255}
    assert vace_kwargs(get_model("wan-tiny"), request) == {}


def test_the_transformer_loads_from_wangps_backbone_and_module_files(tmp_path: Path) -> None:
    preset = get_model("wan-vace-tiny")
    folder = tmp_path / "folder"
    build_tiny(preset, folder)
    backbone, module = write_vace_files(tmp_path)
    loaded = load_transformer(preset, backbone, torch.float32, folder, modules=[module])
    expected = type(loaded).from_pretrained(folder / "transformer").state_dict()
    state = loaded.state_dict()
    assert state.keys() == expected.keys() and any(key.startswith("vace_blocks.") for key in state)
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    # The backbone alone lacks the VACE blocks, named; a module given twice is refused.
    with pytest.raises(
        SingleFileRefused,
        match=r"tiny_vace_backbone.safetensors does not fit .* lacks \d+ key\(s\): vace_blocks",
    ):
        load_transformer(preset, backbone, torch.float32, folder)
    with pytest.raises(SingleFileRefused, match="its tensor vace_"):
        load_transformer(preset, backbone, torch.float32, folder, modules=[module, module])
    assert MODULE_PREFIXES == ("vace_blocks.", "vace_patch_embedding.")


def test_reference_images_feed_the_pipeline(tmp_path: Path) -> None:
    preset = get_model("wan-vace-tiny")
    Image.new("RGB", (40, 64), (200, 30, 30)).save(tmp_path / "r.png")
    kwargs = vace_kwargs(preset, default_request(preset, image_refs=(tmp_path / "r.png",)))
    # Fitted into a white frame of the output size, centred, as WanGP fits reference images.
    (fitted,) = kwargs["reference_images"]
    pixels = np.asarray(fitted)
    assert fitted.size == (64, 64)
    assert (pixels[:, :12] == 255).all() and (pixels[:, 52:] == 255).all()
    assert (pixels[:, 12:52] == (200, 30, 30)).all()
