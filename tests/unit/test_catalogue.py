"""The model catalogue: real presets a user can render with, WanGP ids, and the size/frame rules."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from models.catalogue import (
    DTYPE_BYTES,
    PRESETS_DIR,
    ModelPreset,
    Output,
    Role,
    Task,
    UnknownModel,
    catalogue,
    get_model,
)

GB = 10**9
FAMILIES = {"wan", "hunyuan", "ltx", "flux", "qwen-image"}


def real_presets() -> list[ModelPreset]:
    return [p for p in catalogue().values() if not p.tiny]


def test_at_least_twelve_real_presets_cover_every_family() -> None:
    presets = real_presets()
    assert len(presets) >= 12
    assert {p.family for p in presets} >= FAMILIES


def test_every_preset_file_is_named_after_its_id() -> None:
    for path in PRESETS_DIR.glob("*.json"):
        assert json.loads(path.read_text())["id"] == path.stem


def test_real_presets_name_a_diffusers_repo_and_pipeline() -> None:
    for preset in real_presets():
        assert preset.repo and "/" in preset.repo, preset.id
        assert preset.revision
        assert preset.pipeline.endswith("Pipeline"), preset.id


def test_real_presets_have_positive_sizes_in_known_dtypes() -> None:
    for preset in real_presets():
        assert preset.component(Role.TRANSFORMER), preset.id
        assert preset.component(Role.TEXT_ENCODER), preset.id
        assert preset.component(Role.VAE), preset.id
        for component in preset.components:
            assert component.bytes > 0, (preset.id, component.name)
            assert component.dtype in DTYPE_BYTES, (preset.id, component.name)
        names = [c.name for c in preset.components]
        assert len(names) == len(set(names)), preset.id
        assert preset.sizes_source, preset.id


def test_video_models_have_fps_and_a_frame_rule_image_models_do_not() -> None:
    for preset in real_presets():
        if preset.output is Output.VIDEO:
            assert preset.fps is not None and preset.fps > 0, preset.id
            assert preset.frames is not None, preset.id
            assert preset.frames.allows(preset.defaults.video_length), preset.id
        else:
            assert preset.frames is None, preset.id
            # Text to image, or an edit of the images a job brings (ChronoEdit, Qwen-Image-Edit).
            assert (
                preset.task is Task.T2I
                or preset.inputs
                or preset.task is Task.I2V
                or (preset.output is Output.AUDIO and preset.task is Task.T2A)
            ), preset.id


def test_default_resolution_obeys_each_models_size_rule() -> None:
    for preset in real_presets():
        width, height = (int(side) for side in preset.defaults.resolution.split("x"))
        assert preset.sizes.problem(width, height) is None, preset.id


def test_every_wangp_model_type_maps_to_exactly_one_preset() -> None:
    counts = Counter(t for p in catalogue().values() for t in p.wangp_model_types)
    assert counts, "no WanGP model types at all"
    assert [t for t, n in counts.items() if n > 1] == []
    for model_type in counts:
        assert model_type not in catalogue(), f"{model_type} is also a catalogue id"


@pytest.mark.parametrize(
    ("model_type", "preset_id"),
    [
        ("t2v", "wan2.1-t2v-14b"),
        ("t2v_1.3B", "wan2.1-t2v-1.3b"),
        ("i2v", "wan2.1-i2v-14b-480p"),
        ("ti2v_2_2", "wan2.2-ti2v-5b"),
        ("t2v_2_2", "wan2.2-t2v-a14b"),
        ("i2v_2_2", "wan2.2-i2v-a14b"),
        ("hunyuan", "hunyuan-video-t2v-13b"),
        ("ltxv_13B", "ltx-video-13b"),
        ("flux", "flux.1-dev"),
        ("flux_schnell", "flux.1-schnell"),
        ("qwen_image_20B", "qwen-image"),
    ],
)
def test_wangp_ids_resolve_to_the_right_model(model_type: str, preset_id: str) -> None:
    assert get_model(model_type).id == preset_id


def test_t2v_is_wan21_text_to_video_14b() -> None:
    preset = get_model("t2v")
    assert preset.family == "wan"
    assert preset.task is Task.T2V
    assert preset.pipeline == "WanPipeline"
    assert preset.repo == "Wan-AI/Wan2.1-T2V-14B-Diffusers"
    assert preset.latent.hidden == 5120
    assert preset.latent.layers == 40
    # 14.3B parameters stored as fp32.
    (transformer,) = preset.component(Role.TRANSFORMER)
    assert 14.0e9 < transformer.params < 14.5e9


def test_catalogue_ids_resolve_to_themselves() -> None:
    for preset_id, preset in catalogue().items():
        assert get_model(preset_id) is preset


def test_unknown_model_names_the_known_ids() -> None:
    with pytest.raises(UnknownModel) as caught:
        get_model("no-such-model")
    message = str(caught.value)
    assert "no-such-model" in message
    for preset_id in ("wan2.1-t2v-14b", "flux.1-dev", "qwen-image"):
        assert preset_id in message


def test_wan_frame_rule_is_4k_plus_1() -> None:
    frames = get_model("t2v").frames
    assert frames is not None
    assert frames.allows(81)
    assert not frames.allows(80)
    assert not frames.allows(1)
    assert "4k+1" in frames.describe()


def test_ltx_frame_rule_is_8k_plus_1() -> None:
    frames = get_model("ltxv_13B").frames
    assert frames is not None
    assert frames.allows(97)
    assert not frames.allows(81 + 4)


def test_size_rules_follow_the_vae_and_patch() -> None:
    assert get_model("t2v").sizes.problem(832, 480) is None
    assert get_model("t2v").sizes.problem(830, 480) is not None
    # The Wan 2.2 5B VAE compresses 16x and the transformer patches 2x2: sides are multiples of 32.
    assert get_model("ti2v_2_2").sizes.problem(1280, 720) is not None
    assert get_model("ti2v_2_2").sizes.problem(1280, 704) is None
    assert get_model("ltxv_13B").sizes.problem(832, 480) is None
    assert get_model("ltxv_13B").sizes.problem(848, 480) is not None


def test_a14b_models_carry_both_experts() -> None:
    for model_type in ("t2v_2_2", "i2v_2_2"):
        experts = get_model(model_type).component(Role.TRANSFORMER)
        assert sorted(c.name for c in experts) == ["transformer", "transformer_2"]
        assert experts[0].bytes == experts[1].bytes


def test_only_models_that_encode_their_start_image_have_an_image_encoder() -> None:
    with_image_encoder = {p.id for p in real_presets() if p.component(Role.IMAGE_ENCODER)}
    assert with_image_encoder == {
        "wan2.1-i2v-14b-480p",  # CLIP over the start image
        "wan2.1-fun-inp-1.3b",  # Wan 2.1 I2V's CLIP branch on the 1.3B network
        "wan2.1-flf2v-14b-720p",  # CLIP over the start and end images
        "chronoedit-14b",  # Wan 2.1 I2V's CLIP branch
        "hunyuan-video-1.5-i2v-480p",  # SigLIP over the start image
        "hunyuan-video-1.5-i2v-720p",
    }


def test_llm_text_encoders_are_quantizable_clip_ones_are_not() -> None:
    for preset in real_presets():
        encoders = {c.name: c for c in preset.component(Role.TEXT_ENCODER)}
        if preset.family == "flux":
            assert not encoders["text_encoder"].quantizable  # CLIP-L
            assert encoders["text_encoder_2"].quantizable  # T5-XXL
        elif preset.family == "hunyuan":
            assert encoders["text_encoder"].quantizable  # LLaMA
            assert not encoders["text_encoder_2"].quantizable  # CLIP-L
        elif preset.family == "kandinsky5":
            assert encoders["text_encoder"].quantizable  # Qwen2.5-VL
            assert not encoders["text_encoder_2"].quantizable  # CLIP-L
        elif preset.family == "hunyuan15":
            assert encoders["text_encoder"].quantizable  # Qwen2.5-VL
            assert not encoders["text_encoder_2"].quantizable  # ByT5, the glyph encoder
        elif preset.family == "ltx2":
            # mmgp quantizes text encoders whose module names T5, LLaMA or an LLM: not Gemma 3.
            assert not any(c.quantizable for c in encoders.values()), preset.id
        else:  # UMT5 / T5 / Qwen2.5-VL
            assert all(c.quantizable for c in encoders.values()), preset.id


def test_total_weights_are_in_the_expected_range() -> None:
    expected_gb = {
        "wan2.1-t2v-1.3b": (25, 32),
        "wan2.1-t2v-14b": (75, 85),
        "wan2.2-t2v-a14b": (120, 130),
        "flux.1-dev": (32, 35),
        "qwen-image": (55, 60),
    }
    for preset_id, (low, high) in expected_gb.items():
        assert low * GB < get_model(preset_id).weight_bytes < high * GB, preset_id


def test_latent_shapes_match_the_architectures() -> None:
    assert get_model("t2v_1.3B").latent.hidden == 1536
    ti2v = get_model("ti2v_2_2").latent
    assert (ti2v.channels, ti2v.spatial, ti2v.temporal) == (48, 16, 4)
    ltx = get_model("ltxv_13B").latent
    assert (ltx.channels, ltx.spatial, ltx.temporal, ltx.patch) == (128, 32, 8, [1, 1, 1])
    flux = get_model("flux").latent
    assert (flux.temporal, flux.layers) == (1, 57)


def test_native_frame_rates() -> None:
    assert get_model("t2v").fps == 16
    assert get_model("ti2v_2_2").fps == 24
    assert get_model("t2v_2_2").fps == 16
    assert get_model("hunyuan").fps == 24
    assert get_model("flux").fps is None
