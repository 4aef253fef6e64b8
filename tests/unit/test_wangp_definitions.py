"""WanGP model definitions as catalogue models: the 217 definitions of WanGP's defaults/ at Wan2GP
8681e9f7 (tests/fixtures/wangp/definitions_8681e9f7.json), each served with its own default
settings through `wanfarm render --dry-run` or refused naming its architecture or reason; and a
folder of definitions ($WANFARM_MODELS) listed by `wanfarm models`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from controller.cli import main
from gpu_agent.inventory import loadable
from models import catalogue as catalogue_module
from models.catalogue import Task, UnknownModel, catalogue, get_model
from models.settings import parse_settings, resolve
from models.wangp_definitions import ARCHITECTURES, decide, own_weights, parse_definition, with_references
from models.wangp_keys import model_facts
from tests.served_definitions import definitions_folder

FIXTURE = Path(__file__).parents[1] / "fixtures" / "wangp" / "definitions_8681e9f7.json"
# What the farm serves of WanGP's defaults/ today (102): the catalogue's own models of 25 families
# (Wan 2.1/2.2, their VACE and Fun InP, SkyReels V2 DF, ChronoEdit, Lucy Edit, HunyuanVideo t2v/i2v
# and 1.5, LTX-Video, LTX-2 in one or two stages, Kandinsky 5, FLUX.1/Kontext/2, Chroma, Qwen-Image
# and its edit models, Z-Image and its ControlNets, Krea 2, Ideogram 4, Stable Audio 3, ACE-Step
# 1.5), finetunes with transformer files of their own (int8, GGUF, NVFP4, FP8, NF4), VACE modules
# merged, built-in LoRAs and defaults of their own. Raise it as it grows.
SERVED_AT_LEAST = 102


def fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def test_the_fixture_holds_the_217_definitions_at_8681e9f7_without_prose() -> None:
    facts = fixture()
    assert facts["commit"].startswith("8681e9f7") and facts["count"] == len(facts["definitions"]) == 217
    for definition in facts["definitions"].values():
        assert not {"name", "description"} & set(definition["model"])
        # File names only, but for built-in LoRAs, which the farm fetches by their URL.
        assert "http" not in json.dumps({k: v for k, v in definition["model"].items() if k != "loras"})


def test_each_definition_renders_with_its_own_defaults_or_is_refused_by_reason(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (64, 64), (230, 40, 30)).save(tmp_path / "start.png")
    (tmp_path / "guide.mp4").write_bytes(b"a dry run checks that the file is there, not its frames")
    definitions = fixture()["definitions"]
    for model_id, data in definitions.items():
        write(models_dir, model_id, data)
    served, refused = [], Counter[str]()
    for verdict in catalogue_module.definitions():
        model_id, data = verdict.id, definitions[verdict.id]
        if verdict.preset is None:
            assert verdict.reason, model_id
            why = verdict.reason.split(":")[0].split(" (")[0]
            refused[
                verdict.architecture if why.startswith("architecture") else f"{verdict.architecture}: {why}"
            ] += 1
            continue
        settings = {k: v for k, v in data.items() if k != "model"} | {"model_type": model_id}
        if verdict.preset.task is Task.I2V:  # a default cannot name the start image a job brings
            settings["image_start"] = "start.png"
        if model_facts(verdict.preset.wangp_model_types).guide_letters:  # nor the video an editor edits
            settings["video_guide"] = "guide.mp4"
        path = tmp_path / f"{model_id}.json"
        path.write_text(json.dumps(settings))
        assert main(["render", "--dry-run", str(path)]) == 0, capsys.readouterr().err
        served.append(model_id)
    print(f"\n{len(served)} of 217 WanGP definitions served: {', '.join(served)}")
    print(f"refused: {dict(refused.most_common())}")
    assert len(served) >= SERVED_AT_LEAST
    assert len(served) + refused.total() == 217


def test_wan_finetunes_with_weights_of_their_own_are_served_from_their_files() -> None:
    definitions = fixture()["definitions"]
    for model_id, first in (
        ("moviigen", "wan2.1_moviigen1.1_14B_mbf16.safetensors"),
        ("i2v_720p", "wan2.1_image2video_720p_14B_mbf16.safetensors"),
    ):
        preset = decide(parse_definition(model_id, definitions[model_id]), catalogue()).preset
        assert preset is not None and own_weights(preset)[0] == first
    # A definition on its base's own files renders the base's folder.
    t2v = decide(parse_definition("t2v", definitions["t2v"]), catalogue()).preset
    assert t2v is not None and own_weights(t2v) == ()


def test_a_two_expert_finetune_is_served_from_its_files_for_each_expert() -> None:
    high, low = ["https://x/mine_high_mbf16.safetensors"], ["https://x/mine_low_mbf16.safetensors"]
    both = {"model": {"architecture": "t2v_2_2", "URLs": high, "URLs2": low}}
    preset = decide(parse_definition("mine", both), catalogue()).preset
    assert preset is not None and own_weights(preset) == tuple(high) and own_weights(preset, 2) == tuple(low)
    # Each expert needs its file: no URLs2 on a two-expert base, none on a one-transformer base.
    alone = {"model": {"architecture": "t2v_2_2", "URLs": high}}
    assert decide(parse_definition("mine", alone), catalogue()).reason.endswith(
        "URLs2 (none) does not fit: wan2.2-t2v-a14b has two experts"
    )
    extra = {"model": {"architecture": "t2v", "URLs": high, "URLs2": low}}
    assert decide(parse_definition("mine", extra), catalogue()).reason.endswith(
        "URLs2 (mine_low_mbf16.safetensors) does not fit: wan2.1-t2v-14b has one transformer"
    )


# GGUF, NVFP4, fp8 and NF4 files load dequantized (models.prequantized); nunchaku's do not.
NUNCHAKU = "(nunchaku's SVDQuant), which only nunchaku's CUDA kernels run: the farm does not load it"


@pytest.mark.parametrize(
    ("model_id", "reason"),
    [("z_image_nunchaku_r256_int4", NUNCHAKU), ("qwen_image_edit_plus_20B_nunchaku_r128_fp4", NUNCHAKU)],
)
def test_finetune_weights_the_farm_cannot_load_are_refused_by_name(model_id: str, reason: str) -> None:
    verdict = decide(parse_definition(model_id, fixture()["definitions"][model_id]), catalogue())
    assert verdict.preset is None and verdict.reason.startswith("its weights (")
    assert verdict.reason.endswith(reason), verdict.reason


def test_builtin_loras_come_first_in_every_job_at_their_multipliers(models_dir: Path) -> None:
    # Two built-in LoRAs, one stepping down over the steps, on the tiny Wan.
    builtin = {"loras": ["fast.safetensors", "detail.safetensors"], "loras_multipliers": ["1,0.5", 0.8]}
    write(models_dir, "mine", {"model": {"architecture": "wan-tiny", "URLs": []} | builtin})
    definitions = fixture()["definitions"]
    fusionix = decide(parse_definition("i2v_fusionix", definitions["i2v_fusionix"]), catalogue()).preset
    assert fusionix is not None and fusionix.derived_from == "wan2.1-i2v-14b-480p"
    assert [url.rsplit("/", 1)[1] for url in fusionix.builtin_loras] == [
        "Wan2.1_I2V_14B_FusionX_LoRA.safetensors"
    ]
    settings = {
        "model_type": "mine",
        "activated_loras": ["style.safetensors"],
        "loras_multipliers": "0.5",
        "num_inference_steps": 4,
    }
    loras = resolve(parse_settings(settings), models_dir).generations[0].request.loras
    assert [(lora.name, lora.multipliers, lora.weight_at(3)) for lora in loras] == [
        ("fast.safetensors", "1,0.5", 0.5),
        ("detail.safetensors", "0.8", 0.8),
        ("style.safetensors", "0.5", 0.5),
    ]
    metadata = resolve(parse_settings(settings), models_dir).generations[0].metadata
    assert metadata["activated_loras"] == ["style.safetensors"]  # the job's own, as WanGP records them


def test_a_definition_takes_files_and_loras_from_another_by_model_type() -> None:
    # lucy_edit_fastwan names its files by lucy_edit's model type and its LoRA by ti2v_2_2_fastwan's.
    parsed = {k: parse_definition(k, v) for k, v in fixture()["definitions"].items()}
    resolved = with_references(parsed)
    fastwan = resolved["lucy_edit_fastwan"]
    assert fastwan.urls.files == parsed["lucy_edit"].urls.files and fastwan.urls.same_as == "lucy_edit"
    assert fastwan.loras.urls == parsed["ti2v_2_2_fastwan"].loras.urls
    alone = decide(parsed["lucy_edit_fastwan"], catalogue())
    assert alone.preset is None and "ti2v_2_2_fastwan" in alone.reason


def test_modules_are_refused_by_name() -> None:
    definitions = fixture()["definitions"]
    standin_vace = decide(parse_definition("vace_standin_14B", definitions["vace_standin_14B"]), catalogue())
    assert standin_vace.reason == "architecture 'vace_standin_14B' is not supported yet"
    standin = {
        "model": {"architecture": "t2v", "URLs": "t2v", "modules": [["https://x/standin_bf16.safetensors"]]}
    }
    assert decide(parse_definition("mine", standin), catalogue()).reason == (
        "modules merged into the model are not supported yet: standin_bf16.safetensors"
    )


def test_each_architecture_maps_to_the_catalogue_model_answering_to_it() -> None:
    for architecture, model_id in ARCHITECTURES.items():
        if architecture == "vace_14B_2_2":
            # Wan 2.2 VACE's network is VACE Fun's (vace_fun_14B_2_2); WanGP's model type of that
            # name (Wan 2.2 t2v with the 2.1 VACE module) is another model, which none answers to.
            with pytest.raises(UnknownModel):
                get_model(architecture)
            continue
        if architecture == "fun_inp":
            # Wan 2.1 Fun InP is Wan 2.1 I2V's network: its definition is served from its own file
            # over that model's folder, and no catalogue model answers to its model type.
            assert model_id in catalogue()
            continue
        assert get_model(architecture).id == model_id


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with definitions_folder(tmp_path / "models", monkeypatch) as folder:
        yield folder


def write(folder: Path, model_id: str, data: dict[str, Any]) -> None:
    (folder / f"{model_id}.json").write_text(json.dumps(data))


def test_a_definition_on_the_base_weights_is_a_model_with_its_own_defaults(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        models_dir,
        "t2v_fewsteps",
        {
            "model": {"name": "n", "architecture": "t2v", "URLs": "t2v"},
            "num_inference_steps": 12,
            "flow_shift": 3,
        },
    )
    write(models_dir, "vace_mine", {"model": {"architecture": "vace_14B", "URLs": "t2v"}})
    write(models_dir, "broken", {"no": "model"})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "t2v_fewsteps" in out
    assert "refused vace_mine (vace_14B): vace_14B over the weights of 't2v' needs the VACE module" in out
    assert "refused broken" in out
    preset = get_model("t2v_fewsteps")
    assert (preset.derived_from, preset.defaults.num_inference_steps, preset.defaults.flow_shift) == (
        "wan2.1-t2v-14b",
        12,
        3,
    )
    assert preset.weight_bytes == get_model("t2v").weight_bytes and get_model("t2v").id == "wan2.1-t2v-14b"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model_type": "t2v_fewsteps", "prompt": "a cat"}))
    assert main(["render", "--dry-run", str(job)]) == 0
    assert "t2v_fewsteps 832x480 frames=81 steps=12 " in capsys.readouterr().out


def test_a_definitions_other_defaults_fill_the_keys_a_file_leaves_out(models_dir: Path) -> None:
    # A definition adding film grain by default carries it, as WanGP fills its form from it.
    grain = {"film_grain_intensity": 0.1, "film_grain_saturation": 0.7}
    write(models_dir, "t2v_grain", {"model": {"architecture": "wan-tiny", "URLs": []}, **grain})
    write(
        models_dir,
        "t2v_rife",
        {"model": {"architecture": "wan-tiny", "URLs": []}, "temporal_upsampling": "rife2"},
    )
    grainy, rife = catalogue_module.definitions()
    assert grainy.preset is not None and grainy.preset.wangp_defaults == grain
    job = resolve(parse_settings({"model_type": "t2v_grain", "video_length": 9}), models_dir)
    assert job.generations[0].film_grain == (0.1, 0.7)
    own = resolve(parse_settings({"model_type": "t2v_grain", "film_grain_intensity": 0}), models_dir)
    assert own.generations[0].film_grain[0] == 0  # the file's own value wins
    # RIFE is WanFarm's built-in plugin: its default is rendered as a job's own value would be.
    assert rife.preset is not None and rife.reason == ""
    interpolated = resolve(parse_settings({"model_type": "t2v_rife"}), models_dir)
    assert interpolated.postprocessors == ("rife",)


def test_an_agent_reports_a_definitions_own_file_as_cached_only_beside_its_base() -> None:
    base = get_model("wan-tiny")
    finetune = base.model_copy(update={"id": "tiny-finetune", "derived_from": base.id})
    presets = {base.id: base, finetune.id: finetune}
    assert loadable(["tiny-finetune"], presets) == ()
    assert loadable(["tiny-finetune", "wan-tiny"], presets) == ("tiny-finetune", "wan-tiny")
    assert loadable(["retired-model"], presets) == ("retired-model",)
