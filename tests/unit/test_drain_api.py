"""Drain and demand over HTTP: `POST /v1/agents/{id}/drain` (admin keys only; 404 for an unknown agent,
422 for a bad body) marks the agent draining in /v1/agents, and `GET /v1/autoscale` shows the demand
per GPU class (disabled on a fixed pool). The farm's own routes over a real store and the fake cluster
(no Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.autoscale import Autoscaler
from controller.farm import Farm, FarmConfig
from controller.service import FarmService
from scheduler.demand import GpuClass, ScalingRules
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher

ADMIN, USER = "k-admin", "k-user"
AGENT = "node0001-gpu0"
NOW = 1_700_000_000.0
RULES = ScalingRules((GpuClass("gpu24", "RTX 4090", max_gpus=3),))


def farm_app(tmp_path: Path, scaling: ScalingRules | None) -> tuple[Farm, TestClient]:
    farm = Farm(FarmConfig(data_dir=tmp_path / "farm", scaling=scaling))
    cluster = FakeCluster(gpu_class="gpu24")
    farm.dispatcher = fake_dispatcher(farm.store, cluster, tmp_path, clock=lambda: NOW)
    farm.registry = farm.dispatcher.registry
    if scaling is not None:
        farm.autoscaler = farm.dispatcher.autoscaler = Autoscaler(
            cluster,  # type: ignore[arg-type]
            farm.registry,
            scaling,
            farm.metrics,
        )
    service = FarmService(farm.store, farm.storage, farm.pool, lambda: NOW, farm.metrics)
    keys = KeyRing({ADMIN: Principal("root", Role.ADMIN), USER: Principal("ana", Role.SUBMIT)})
    app = create_app(
        service,
        keys,
        farm.agent_listing,
        farm.metrics,
        drain_agent=farm.drain_agent,
        autoscale=farm.autoscale_view,
    )
    return farm, TestClient(app)


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[tuple[Farm, TestClient]]:
    farm, http = farm_app(tmp_path, RULES)
    with http:
        yield farm, http
    farm.store.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_admin_drains_an_agent_it_shows_draining_and_its_running_job_is_named(
    scaled: tuple[Farm, TestClient],
) -> None:
    farm, http = scaled
    [job] = farm.store.add_jobs([new_job("ana")], NOW)
    assert farm.dispatcher is not None
    farm.dispatcher.tick()
    answer = http.post(f"/v1/agents/{AGENT}/drain", headers=_auth(ADMIN), json={"finish": True})
    assert answer.status_code == 202
    assert answer.json() == {"agent_id": AGENT, "node_id": "node0001", "state": "draining", "job_id": job.id}
    [row] = http.get("/v1/agents", headers=_auth(USER)).json()
    assert row["draining"] is True and row["gpu_class"] == "gpu24"


def test_a_drain_is_refused_to_a_submit_key_for_an_unknown_agent_and_for_a_bad_body(
    scaled: tuple[Farm, TestClient],
) -> None:
    _, http = scaled
    refused = http.post(f"/v1/agents/{AGENT}/drain", headers=_auth(USER))
    assert refused.status_code == 403 and "admin key" in refused.json()["error"]
    unknown = http.post("/v1/agents/nobody-gpu0/drain", headers=_auth(ADMIN))
    assert unknown.status_code == 404 and "nobody-gpu0" in unknown.json()["error"]
    bad = http.post(f"/v1/agents/{AGENT}/drain", headers=_auth(ADMIN), json={"finish": "soon"})
    assert bad.status_code == 422 and "finish" in " ".join(bad.json()["detail"])
    extra = http.post(f"/v1/agents/{AGENT}/drain", headers=_auth(ADMIN), json={"now": True})
    assert extra.status_code == 422
    [row] = http.get("/v1/agents", headers=_auth(USER)).json()
    assert row["draining"] is False  # nothing refused was half-applied


def test_the_demand_per_class_is_served_and_a_fixed_pool_says_it_does_not_autoscale(
    scaled: tuple[Farm, TestClient], tmp_path: Path
) -> None:
    farm, http = scaled
    farm.store.add_jobs([new_job("ana"), new_job("ana")], NOW)
    assert farm.dispatcher is not None
    farm.dispatcher.tick()
    view = http.get("/v1/autoscale", headers=_auth(USER)).json()
    assert view["enabled"] is True
    # One job runs on the class's only agent; the other asks for a GPU of its class.
    assert view["classes"] == [
        {
            "gpu_class": "gpu24",
            "gpu": "RTX 4090",
            "busy": 1,
            "idle": 0,
            "waiting": 1,
            "wanted": 2,
            "max_gpus": 3,
        }
    ]
    fixed, fixed_http = farm_app(tmp_path / "fixed", None)
    with fixed_http:
        assert fixed_http.get("/v1/autoscale", headers=_auth(USER)).json() == {
            "enabled": False,
            "classes": [],
            "released": 0,
        }
    fixed.store.close()
