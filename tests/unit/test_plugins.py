"""Plugins through entry points (processing.plugins): the built-ins registered as any package's,
what a settings object asks of them, refusals naming the plugin that is missing, and the job's
plugins carried from submit to placement (store, scheduler, agent).

WanGP's post-processing keys as read at deepbeepmeep/Wan2GP@8681e9f7: postprocessing/rife
(temporal_upsampling "rife2"/"rife4", WanFarm's built-in `rife`: tests/unit/test_rife.py),
postprocessing/audio_processors.py (postprocess_audio).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.dispatcher import agent_view
from controller.jobs import NewJob
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.agent import WorkChanged, _as_placed
from gpu_agent.inventory import probe_inventory
from gpu_agent.messages import AgentConfig
from gpu_agent.storage import LocalStore, StorageConfig, StorageHealth
from models import catalogue as catalogue_module
from models.attention import AttentionMode
from models.catalogue import get_model
from models.overrides import Overrides
from models.settings import SettingsError, parse_settings, resolve
from models.weights import WeightCache
from processing import plugins
from processing.plugins import Clip, PluginGroup
from scheduler.feasibility import choose_profile, pool_refusal, why_not
from scheduler.registry import get_policy, policy_names
from scheduler.snapshot import AgentView, PendingJob, Snapshot
from tests.declared_agents import declared_agent
from tests.job_records import TINY_WORK, WAN_14B, pending_job, placed_task
from tests.unit.served_app import serve

NOW = 1_000.0
SEPIA = Overrides(plugins=frozenset({"sepia"}))


class Sepia:
    """A post-processor of this test's own, registered below through a fake entry point."""

    name = "sepia"
    keys = ("sepia_tone",)
    order = 40

    def wanted(self, settings: Mapping[str, Any]) -> bool:
        return bool(settings.get("sepia_tone"))

    def problems(self, settings: Mapping[str, Any], video: bool) -> list[str]:
        return [] if settings.get("sepia_tone") in (True, 1) else ["sepia_tone: must be true"]

    def apply(self, clip: Clip, settings: Mapping[str, Any]) -> Clip:
        grey = clip.frames.mean(axis=-1, keepdims=True).astype(np.uint8)
        return clip.with_frames(np.repeat(grey, 3, axis=-1), sepia=True)


class Family:
    """A model family of this test's own: its presets folder is set by the test."""

    name = "extra-family"
    presets = Path()


@pytest.fixture
def sepia_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sepia registered in wanfarm.postprocessors beside what is really installed."""
    real = metadata.entry_points
    extra = metadata.EntryPoint("sepia", f"{__name__}:Sepia", PluginGroup.POSTPROCESSORS.value)

    def entry_points(group: str) -> metadata.EntryPoints:
        found = real(group=group)
        return metadata.EntryPoints([*found, extra]) if group == extra.group else found

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    plugins.refresh()
    yield
    monkeypatch.undo()
    plugins.refresh()


def test_rife_film_grain_and_lanczos_are_registered_through_wanfarms_own_entry_points() -> None:
    found = {(info.name, info.group): info for info in plugins.installed()}
    grain = found["film_grain", PluginGroup.POSTPROCESSORS]
    lanczos = found["lanczos", PluginGroup.POSTPROCESSORS]
    rife = found["rife", PluginGroup.POSTPROCESSORS]
    assert grain.keys == ("film_grain_intensity", "film_grain_saturation") and grain.builtin
    assert lanczos.keys == ("spatial_upsampling",) and lanczos.distribution == "wanfarm"
    assert rife.keys == ("temporal_upsampling",) and rife.builtin
    assert found["wanfarm", PluginGroup.MODEL_FAMILIES].builtin
    # WanGP's order: temporal, spatial, grain.
    assert list(plugins.postprocessors())[:3] == ["rife", "lanczos", "film_grain"]


def test_grain_and_upsampling_run_as_plugins_and_need_no_particular_agent() -> None:
    settings = {"model_type": "wan-tiny", "film_grain_intensity": 0.2, "spatial_upsampling": "lanczos2"}
    job = resolve(parse_settings(settings), Path("/nonexistent"))
    assert job.postprocessors == ("lanczos", "film_grain")
    assert job.overrides is None  # built-ins ship with every agent
    clip = Clip(np.full((2, 8, 8, 3), 100, np.uint8), 16, seed=3)
    out = plugins.run(job.postprocessors, clip, job.settings.as_dict())
    assert out.frames.shape == (2, 16, 16, 3) and out.fps == 16
    assert not np.array_equal(out.frames, np.full_like(out.frames, 100))  # grain was added


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("temporal_upsampling", "rife3", "is not one of WanGP's RIFE values; accepted: 'rife2', 'rife4'"),
        ("postprocess_audio", "mmaudio", "MMAudio is not on this stack"),
        ("postprocess_audio", "custom", "needs the post-processor 'custom_soundtrack'"),
        ("temporal_upsampling", "film4", "no installed post-processor honours it"),
        ("spatial_upsampling", "flashvsr2", "needs the post-processor 'flashvsr', which is not installed"),
        ("spatial_upsampling", "vae2", "the model's own upscaling VAE is not in WanFarm yet"),
        ("spatial_upsampling", "ltx232", "needs the post-processor 'ltx2_upsampler'"),
        ("spatial_upsampling", "lanczos3", "is not a Lanczos factor of WanGP's"),
    ],
)
def test_a_post_processing_key_without_its_plugin_is_refused_naming_the_plugin(
    key: str, value: str, named: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        resolve(parse_settings({"model_type": "wan-tiny", key: value}), Path("/nonexistent"))
    [problem] = [p for p in refused.value.problems if p.startswith(f"{key}:")]
    assert problem.startswith(f"{key}: {value!r} ") and named in problem


def test_post_processing_an_audio_output_is_refused_naming_the_key() -> None:
    settings = {"model_type": "stable-audio3-tiny", "film_grain_intensity": 0.1}
    with pytest.raises(SettingsError) as refused:
        resolve(parse_settings(settings), Path("/nonexistent"))
    assert refused.value.problems == [
        "film_grain_intensity: 0.1 is not supported by WanFarm yet: the post-processor 'film_grain' "
        "reads pictures and stable-audio3-tiny renders a waveform"
    ]


def test_empty_post_processing_keys_are_accepted_as_wangp_writes_them() -> None:
    settings = {"model_type": "wan-tiny", "temporal_upsampling": "", "postprocess_audio": ""}
    assert resolve(parse_settings(settings), Path("/nonexistent")).postprocessors == ()


@pytest.mark.usefixtures("sepia_installed")
def test_an_installed_plugin_is_listed_applied_and_required_of_the_agent() -> None:
    [info] = [info for info in plugins.installed() if info.name == "sepia"]
    assert info.keys == ("sepia_tone",) and not info.builtin
    job = resolve(parse_settings({"model_type": "wan-tiny", "sepia_tone": True}), Path("/nonexistent"))
    assert job.postprocessors == ("sepia",) and job.warnings == []
    assert job.overrides == SEPIA
    assert job.generations[0].metadata["sepia_tone"] is True  # its key travels into the output
    clip = plugins.run(job.postprocessors, Clip(np.zeros((1, 4, 4, 3), np.uint8), 16, 1), {})
    assert clip.metadata == {"sepia": True}
    with pytest.raises(SettingsError, match="sepia_tone: must be true"):
        resolve(parse_settings({"model_type": "wan-tiny", "sepia_tone": 2}), Path("/nonexistent"))


def test_a_plugins_key_while_it_is_not_installed_is_reported_as_unused() -> None:
    job = resolve(parse_settings({"model_type": "wan-tiny", "sepia_tone": True}), Path("/nonexistent"))
    assert job.postprocessors == () and job.overrides is None
    assert job.warnings == ["unknown key kept but not used: sepia_tone"]


def test_a_model_family_plugin_adds_its_presets_to_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = json.loads((catalogue_module.PRESETS_DIR / "wan-tiny.json").read_text())
    (tmp_path / "wan-tiny-copy.json").write_text(json.dumps(preset | {"id": "wan-tiny-copy"}))
    monkeypatch.setattr(Family, "presets", tmp_path)
    real = metadata.entry_points
    extra = metadata.EntryPoint("extra-family", f"{__name__}:Family", PluginGroup.MODEL_FAMILIES.value)
    monkeypatch.setattr(
        plugins.metadata,
        "entry_points",
        lambda group: (
            metadata.EntryPoints([*real(group=group), extra]) if group == extra.group else real(group=group)
        ),
    )
    try:
        plugins.refresh()
        catalogue_module._own_presets.cache_clear()
        catalogue_module.catalogue.cache_clear()
        assert get_model("wan-tiny-copy").pipeline == get_model("wan-tiny").pipeline
        assert "extra-family" in plugins.model_families()
    finally:
        monkeypatch.undo()
        plugins.refresh()
        catalogue_module._own_presets.cache_clear()
        catalogue_module.catalogue.cache_clear()
    assert "wan-tiny-copy" not in catalogue_module.catalogue()


# -- placement: pure policy over agent views ------------------------------------------------------


def with_plugins(agent: AgentView, *names: str) -> AgentView:
    return replace(agent, plugins=frozenset({"film_grain", "lanczos", "wanfarm", *names}))


def needing(overrides: Overrides | None, job_id: str) -> PendingJob:
    return replace(pending_job(job_id, submitted_at=NOW), overrides=overrides)


def test_only_an_agent_with_the_plugin_can_run_a_job_that_needs_it() -> None:
    work = needing(None, "j").work
    bare = declared_agent("H100 SXM", "bare", ram_gib=128)
    equipped = with_plugins(declared_agent("RTX 4090", "equipped"), "sepia")
    assert choose_profile(get_model(WAN_14B), work, bare, SEPIA) is None
    assert choose_profile(get_model(WAN_14B), work, equipped, SEPIA) is not None
    assert why_not(get_model(WAN_14B), work, bare, SEPIA) == (
        "bare lacks the post-processors sepia (plugins not installed there)"
    )
    both = Overrides(attention=AttentionMode.SDPA, plugins=frozenset({"sepia"}))
    assert choose_profile(get_model(WAN_14B), work, equipped, both) is not None


def test_a_pool_where_no_agent_has_the_plugin_refuses_naming_it() -> None:
    pool = [declared_agent("H100 SXM", "a", ram_gib=128), with_plugins(declared_agent("RTX 4090", "b"))]
    assert pool_refusal(get_model(WAN_14B), needing(None, "j").work, pool, SEPIA) == (
        "wan2.1-t2v-14b at 1280x720x81 cannot run: no agent has the post-processors it needs "
        "installed (sepia): pip install the package that provides them on a GPU node"
    )


@pytest.mark.parametrize("policy", policy_names())
def test_each_policy_places_a_plugin_job_only_on_an_agent_that_has_the_plugin(policy: str) -> None:
    # The faster, roomier card lacks the plugin; the job goes to the one that has it.
    pool = (
        declared_agent("H100 SXM", "a-fast", ram_gib=128),
        with_plugins(declared_agent("RTX 4090", "b-equipped", ram_gib=128), "sepia"),
    )
    decisions = get_policy(policy).place(Snapshot(NOW, pool, (needing(SEPIA, "needs"),)))
    assert [(a.job_id, a.agent_id) for a in decisions.assignments] == [("needs", "b-equipped")]
    plain = get_policy(policy).place(Snapshot(NOW, pool[:1], (needing(SEPIA, "needs"),)))
    assert plain.assignments == () and "sepia" in plain.waiting[0].reason


# -- from submit to the agent ---------------------------------------------------------------------


def test_the_store_keeps_a_jobs_plugins_for_placement_and_dispatch(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs.db") as store:
        job = NewJob("ana", 50, {"model_type": "wan-tiny"}, TINY_WORK, plugins=("sepia",))
        [record] = store.add_jobs([job, replace(job, plugins=())], NOW)[:1]
        assert record.plugins == ("sepia",)
        queued = store.queued_jobs(store.queue_ids(10))
        assert [q.overrides for q in queued] == [SEPIA, None]
        assert store.get(record.id) is not None and store.get(record.id).plugins == ("sepia",)  # type: ignore[union-attr]


def test_an_agent_without_the_plugin_refuses_a_task_placed_for_it() -> None:
    settings = {"model_type": "wan-tiny", "sepia_tone": True}
    task = replace(placed_task("j1", settings), plugins=("sepia",))
    job = resolve(parse_settings(settings), Path("/nonexistent"))  # sepia is not installed here
    with pytest.raises(WorkChanged, match="needs the post-processors sepia, not installed on this node"):
        _as_placed(job, task)


@pytest.mark.usefixtures("sepia_installed")
def test_an_agents_inventory_names_the_plugins_installed_on_its_node(tmp_path: Path) -> None:
    config = AgentConfig(
        "a1", "n1", 0, StorageConfig("local", tmp_path / "store"), tmp_path / "cache", declared_gpu="RTX 4090"
    )
    found = probe_inventory(config, WeightCache(tmp_path / "cache"), None, None, StorageHealth())
    assert {"film_grain", "lanczos", "wanfarm", "sepia"} <= set(found.plugins)
    view = agent_view(found, None)
    assert view.plugins is not None and "sepia" in view.plugins  # what placement reads


@pytest.mark.usefixtures("sepia_installed")
@pytest.mark.parametrize("equipped", [False, True])
def test_submit_refuses_a_plugin_job_no_agent_can_run_and_queues_one_an_agent_can(
    equipped: bool, tmp_path: Path
) -> None:
    agent = declared_agent("RTX 4090")
    pool = [with_plugins(agent, "sepia") if equipped else agent]
    with JobStore(tmp_path / "jobs.db") as store:
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: pool, lambda: NOW)
        app = create_app(service, KeyRing({"ana-key": Principal("ana", Role.SUBMIT)}), list)
        with serve(app) as url:
            settings = {"model_type": "wan-tiny", "prompt": "a fox", "seed": 1, "sepia_tone": True}
            answer = httpx.post(
                f"{url}/v1/jobs", json=settings, headers={"Authorization": "Bearer ana-key"}, timeout=30
            )
        if not equipped:
            assert answer.status_code == 409
            [line] = answer.json()["detail"]
            assert "no agent has the post-processors it needs installed (sepia)" in line
            return
        assert answer.status_code == 201, answer.text
        [queued] = store.queued_jobs(store.queue_ids(10))
        assert queued.overrides == SEPIA


def test_a_plugin_that_fails_to_load_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = metadata.entry_points
    bad = metadata.EntryPoint("gone", "no_such_module_here:Gone", PluginGroup.POSTPROCESSORS.value)
    monkeypatch.setattr(
        plugins.metadata,
        "entry_points",
        lambda group: (
            metadata.EntryPoints([*real(group=group), bad]) if group == bad.group else real(group=group)
        ),
    )
    try:
        plugins.refresh()
        [line] = plugins.broken()
        assert line.startswith("wanfarm.postprocessors gone (no_such_module_here:Gone): ModuleNotFoundError")
        assert "gone" not in {info.name for info in plugins.installed()}
        job = resolve(
            parse_settings({"model_type": "wan-tiny", "film_grain_intensity": 0.1}), Path("/nonexistent")
        )
        assert job.postprocessors == ("film_grain",)
    finally:
        monkeypatch.undo()
        plugins.refresh()
    assert plugins.broken() == ()
