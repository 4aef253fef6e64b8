"""Step skipping (WanGP's skip_steps_cache_type) as settings read it and as it plans a job's steps:
which models take TeaCache and MagCache, what each refusal names, the plans against WanGP's rule,
the price of a skipping job and its metadata.

WanGP's rule, its offer per model and its figures are read at deepbeepmeep/Wan2GP 8681e9f7
(models/wan/modules/model.py compute_magcache_threshold / compute_teacache_threshold and forward,
models/wan/wan_handler.py set_cache_parameters and query_model_def, wgp.py validate_settings).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.store import JobStore
from gpu_agent.agent import GpuAgent
from gpu_agent.messages import EventKind
from models.catalogue import get_model
from models.settings import SettingsError, parse_settings, resolve
from models.step_cache import (
    CALIBRATIONS,
    CacheKind,
    StepPlan,
    StepSkip,
    calibration_key,
    expected_step_fraction,
    mag_plan,
    tea_plan,
)
from models.work import WorkSize
from processing.metadata import read_metadata
from scheduler.cost import render_flops
from tests.job_records import TINY_WORK, new_job, placed_task
from tests.unit.test_agent_storage import run_to_the_end

MAG = StepSkip(CacheKind.MAG, 2.0)
TEA = StepSkip(CacheKind.TEA, 2.0)


def job(settings: dict[str, Any], folder: Path) -> Any:
    return resolve(parse_settings(settings), folder)


def refusal(settings: dict[str, Any], folder: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        job(settings, folder)
    return str(caught.value)


# --- the plans ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [10, 30, 50])
@pytest.mark.parametrize("multiplier", [1.5, 1.75, 2.0, 2.25, 2.5])
def test_mag_plans_run_about_steps_over_the_multiplier(steps: int, multiplier: float) -> None:
    plan = mag_plan(CALIBRATIONS["t2v_1.3B"], StepSkip(CacheKind.MAG, multiplier), steps)
    assert plan.cond[0] and len(plan.cond) == steps
    # The threshold search gets within a step or two of the aim (the 0.01 grid is coarse).
    assert abs(plan.steps_run - int(steps / multiplier)) <= 2
    assert plan.steps_run + plan.steps_skipped == steps


def test_at_the_published_length_mag_reads_each_pass_its_own_ratios() -> None:
    # The 1.3B list holds 49 steps of two passes behind the first: at 50 steps no interpolation.
    # Its first unconditional ratio, 1.02213, is past the 0.02 threshold of x1.75, so that pass
    # runs step 1 which the conditional pass skips (WanGP's rule worked by hand on its figures).
    plan = mag_plan(CALIBRATIONS["t2v_1.3B"], StepSkip(CacheKind.MAG, 1.75), 50)
    assert plan.threshold == pytest.approx(0.02)
    cond_skipped = [1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 24, 26, 28, 30, 32, 34, 36]
    uncond_skipped = [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 28, 30, 32, 34, 36]
    assert [step for step, runs in enumerate(plan.cond) if not runs] == cond_skipped
    assert [step for step, runs in enumerate(plan.uncond) if not runs] == uncond_skipped
    assert (plan.steps_run, plan.steps_skipped) == (28, 22)  # int(50 / 1.75) = 28


def test_no_step_is_skipped_before_the_start_share() -> None:
    plan = mag_plan(CALIBRATIONS["t2v"], StepSkip(CacheKind.MAG, 2.5, start_perc=40), 30)
    assert all(plan.cond[:13])  # int(40 x 30 / 100) = 12: steps 0 to 12 run
    assert plan.steps_skipped > 0
    assert mag_plan(CALIBRATIONS["t2v"], StepSkip(CacheKind.MAG, 2.5, start_perc=100), 30).steps_skipped == 0


def test_tea_skips_while_the_summed_change_stays_under_the_threshold() -> None:
    # Changes of 0.06 a step: the 1.3B polynomial maps each to about 0.113, so at the threshold
    # 0.12 every other step is skipped; the first and the last always run: 16 steps, nearest 15.
    plan = tea_plan(CALIBRATIONS["t2v_1.3B"], TEA, [0.0] + [0.06] * 29)
    assert plan.cond[0] and plan.cond[-1] and plan.cond == plan.uncond
    assert plan.cond[1:29] == (False, True) * 14
    assert plan.steps_run == 16
    noisy = tea_plan(CALIBRATIONS["t2v_1.3B"], TEA, [0.0] + [0.6] * 29)
    assert noisy.steps_skipped == 0  # every change past any threshold of the search


def test_the_expected_fraction_is_one_over_the_multiplier() -> None:
    assert expected_step_fraction(None) == 1.0
    assert expected_step_fraction(StepSkip(CacheKind.MAG, 2.5)) == 0.4
    assert expected_step_fraction(StepSkip(CacheKind.TEA, 0.5)) == 1.0  # never more steps than asked


def test_a_skipping_job_is_priced_at_the_steps_expected_to_run() -> None:
    preset = get_model("wan2.1-t2v-1.3b")
    plain = WorkSize(preset.id, 832, 480, 81, 30)
    skipping = replace(plain, step_skip=MAG)
    assert skipping.key != plain.key
    assert render_flops(preset, skipping) == pytest.approx(
        render_flops(preset, plain) * expected_step_fraction(MAG)
    )
    assert skipping.describe() == "wan2.1-t2v-1.3b at 832x480x81, 30 steps with MagCache x2"


# --- settings ----------------------------------------------------------------------------------------


def test_settings_with_mag_render_it_and_record_it(tmp_path: Path) -> None:
    settings = {"model_type": "t2v_1.3B", "skip_steps_cache_type": "mag", "skip_steps_multiplier": 2.25}
    resolved = job(settings | {"skip_steps_start_step_perc": 10}, tmp_path)
    [generation] = resolved.generations
    caching = generation.request.step_caching
    assert caching is not None and caching.calibration == "t2v_1.3B"
    assert caching.skip == StepSkip(CacheKind.MAG, 2.25, 10) == resolved.work.step_skip
    assert {k: generation.metadata[k] for k in settings if k != "model_type"} == {
        "skip_steps_cache_type": "mag",
        "skip_steps_multiplier": 2.25,
    }
    assert generation.metadata["skip_steps_start_step_perc"] == 10
    assert resolved.warnings == []


def test_an_empty_cache_type_skips_nothing_and_records_nothing(tmp_path: Path) -> None:
    [generation] = job({"model_type": "t2v", "skip_steps_multiplier": 2.5}, tmp_path).generations
    assert generation.request.step_caching is None
    assert not any(key.startswith("skip_steps") for key in generation.metadata)


def test_the_older_tea_cache_setting_reads_as_wangp_converts_it(tmp_path: Path) -> None:
    [generation] = job(
        {"model_type": "t2v", "tea_cache_setting": 2.0, "tea_cache_start_step_perc": 20}, tmp_path
    ).generations
    assert generation.request.step_caching is not None
    assert generation.request.step_caching.skip == StepSkip(CacheKind.TEA, 2.0, 20)
    off = job({"model_type": "t2v", "tea_cache_setting": 0, "skip_steps_cache_type": "mag"}, tmp_path)
    assert off.generations[0].request.step_caching is None  # 0 turns the cache off, whatever the newer key


def test_i2v_takes_its_figures_by_the_canvas_as_wangp_does() -> None:
    assert calibration_key("i2v", CacheKind.TEA, 832 * 480) == "i2v_480p"
    assert calibration_key("i2v", CacheKind.MAG, 1280 * 720) == "i2v_720p"
    assert calibration_key("ti2v_2_2", CacheKind.TEA, 1280 * 704) is None


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"model_type": "ti2v_2_2", "skip_steps_cache_type": "tea"},
            'skip_steps_cache_type: "tea" is not offered for ti2v_2_2: WanGP refuses it too; '
            'accepted: "", "mag"',
        ),
        (
            {"model_type": "t2v_2_2", "guidance2_scale": 4, "skip_steps_cache_type": "mag"},
            'skip_steps_cache_type: "mag" is not supported by WanFarm yet: WanGP\'s MagCache spans '
            'Wan 2.2\'s two experts, which WanFarm does not do yet; accepted: ""',
        ),
        (
            {"model_type": "hunyuan", "skip_steps_cache_type": "tea"},
            'skip_steps_cache_type: "tea" is not supported by WanFarm yet: HunyuanVideo\'s',
        ),
        (
            {"model_type": "t2v", "skip_steps_cache_type": "first_block"},
            'skip_steps_cache_type: "first_block" is not offered for t2v: WanGP refuses it too; '
            'accepted: "", "tea", "mag"',
        ),
        (
            {"model_type": "flux-tiny", "skip_steps_cache_type": "mag"},
            'skip_steps_cache_type: "mag" is not supported by WanFarm yet: no published MagCache '
            'calibration for flux-tiny; accepted: ""',
        ),
        (
            {"model_type": "t2v", "skip_steps_cache_type": "mag", "num_inference_steps": 60},
            'skip_steps_cache_type: "mag" runs at most 50 steps in WanGP, which refuses 60',
        ),
        (
            {"model_type": "ti2v_2_2", "tea_cache_setting": 2.0},
            'tea_cache_setting: 2.0 is not offered for ti2v_2_2: WanGP refuses it too; accepted: "", "mag"',
        ),
    ],
    ids=[
        "tea on ti2v",
        "mag on two experts",
        "hunyuan",
        "unknown cache",
        "no figures",
        "mag over 50",
        "legacy",
    ],
)
def test_a_cache_that_cannot_render_as_in_wangp_is_refused_naming_key_model_and_why(
    settings: dict[str, Any], named: str, tmp_path: Path
) -> None:
    assert named in refusal(settings, tmp_path)


def test_on_a_model_without_step_skipping_wangp_drops_the_cache_and_says_so(tmp_path: Path) -> None:
    resolved = job({"model_type": "flux", "skip_steps_cache_type": "tea"}, tmp_path)
    assert resolved.generations[0].request.step_caching is None
    assert resolved.work.step_skip is None
    assert resolved.warnings == [
        'skip_steps_cache_type: "tea" is not used: WanGP offers no step skipping for flux'
    ]
    assert "skip_steps_cache_type" not in resolved.generations[0].metadata


def test_a_multiplier_outside_the_schema_is_refused_by_name(tmp_path: Path) -> None:
    message = refusal(
        {"model_type": "t2v", "skip_steps_cache_type": "mag", "skip_steps_multiplier": 0}, tmp_path
    )
    assert message.startswith("skip_steps_multiplier: ")


def test_a_plan_counts_what_its_conditional_pass_runs() -> None:
    plan = StepPlan((True, False, True), (True, True, True), 0.05)
    assert (plan.steps_run, plan.steps_skipped) == (2, 1)
    assert json.dumps(MAG.describe()) == '"MagCache x2"'


def test_the_store_keeps_a_jobs_step_skipping(tmp_path: Path) -> None:
    # The agent renders only the work a job was placed as: what the store reads back must be it.
    work = job({"model_type": "wan-tiny", "skip_steps_cache_type": "mag"}, tmp_path).work
    assert work.step_skip == StepSkip(CacheKind.MAG, 1.75)
    with JobStore(tmp_path / "jobs.db") as store:
        skipping, plain = store.add_jobs([new_job(work=work), new_job()], 0.0)
        queued = store.queued_jobs([skipping.id, plain.id])
        assert [job.work for job in queued] == [work, TINY_WORK]
        record = store.get(skipping.id)
        assert record is not None and record.work == work


def test_a_dry_run_names_the_refused_cache_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"model_type": "ti2v_2_2", "skip_steps_cache_type": "tea"}))
    assert main(["render", "--dry-run", str(path)]) == 2
    assert 'job.json: skip_steps_cache_type: "tea" is not offered for ti2v_2_2' in capsys.readouterr().err
    path.write_text(json.dumps({"model_type": "t2v", "skip_steps_cache_type": "mag"}))
    assert main(["render", "--dry-run", str(path)]) == 0


def test_an_agent_renders_a_skipping_job_placed_from_the_store(worker: GpuAgent, tmp_path: Path) -> None:
    settings = {"model_type": "wan-tiny", "prompt": "a fox", "seed": 3, "skip_steps_cache_type": "mag"}
    with JobStore(tmp_path / "jobs.db") as store:
        [stored] = store.add_jobs([new_job(settings=settings, work=job(settings, tmp_path).work)], 0.0)
    task = replace(placed_task("job-1", settings), work=stored.work)

    end = run_to_the_end(worker, task=task)

    assert end.kind is EventKind.SUCCEEDED, end.error
    [output] = (tmp_path / "objects" / "jobs" / "job-1" / "outputs").glob("*.mp4")
    metadata = read_metadata(output)
    assert metadata is not None and metadata["skip_steps_cache_type"] == "mag"
    plan = mag_plan(CALIBRATIONS["t2v_1.3B"], StepSkip(CacheKind.MAG, 1.75), 4)  # wan-tiny's 4 steps
    assert (metadata["wanfarm"]["steps_run"], metadata["wanfarm"]["steps_skipped"]) == (
        plan.steps_run,
        plan.steps_skipped,
    )
