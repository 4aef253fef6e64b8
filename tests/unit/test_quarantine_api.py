"""Quarantine over HTTP: /v1/agents shows why an agent gets no new work, /metrics counts it, and
`POST /v1/agents/{id}/release` ends it (admin keys only; 404 for an unknown agent, 409 for one not
quarantined). The farm's own listing and release over a real store and the fake cluster (no Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.cli.client import FarmClient, FarmError
from controller.cli.jobs import agents_command
from controller.dispatcher import Dispatcher
from controller.farm import Farm, FarmConfig
from controller.quarantine_metrics import QuarantineCollector
from controller.service import FarmService
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher
from tests.unit.served_app import serve

ADMIN, USER = "k-admin", "k-user"
BAD, GOOD = "node0001-gpu0", "node0001-gpu1"


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[Farm, FakeCluster]]:
    """A farm not started: its store, a dispatcher over the fake cluster in place of Ray."""
    farm = Farm(FarmConfig(data_dir=tmp_path / "farm"))
    cluster = FakeCluster(gpus=2)
    farm.dispatcher = fake_dispatcher(farm.store, cluster, tmp_path, clock=lambda: 1_700_000_000.0)
    farm.registry = farm.dispatcher.registry
    farm.metrics.registry.register(QuarantineCollector(farm.dispatcher.quarantine, farm.inventories))
    yield farm, cluster
    farm.store.close()


@pytest.fixture
def client(farm: tuple[Farm, FakeCluster]) -> Iterator[TestClient]:
    farm_, _ = farm
    service = FarmService(farm_.store, farm_.storage, farm_.pool, lambda: 1_700_000_000.0, farm_.metrics)
    keys = KeyRing({ADMIN: Principal("root", Role.ADMIN), USER: Principal("ana", Role.SUBMIT)})
    app = create_app(service, keys, farm_.agent_listing, farm_.metrics, release_agent=farm_.release_agent)
    with TestClient(app) as http:
        yield http


def _quarantine_by_storage_errors(dispatcher: Dispatcher, cluster: FakeCluster) -> None:
    dispatcher.tick()  # the count first seen is the base: errors from before are not judged
    agent = cluster.agents[BAD]
    agent._inventory = replace(agent._inventory, storage_errors=6)
    dispatcher.tick()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _quarantined_gauge(client: TestClient) -> dict[str, tuple[str, float]]:
    text = client.get("/metrics").text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "wanfarm_agent_quarantined"]
    return {s.labels["agent"]: (s.labels["kind"], s.value) for s in family.samples}


def test_agents_show_the_quarantine_and_an_admin_releases_it(
    farm: tuple[Farm, FakeCluster], client: TestClient
) -> None:
    farm_, cluster = farm
    assert farm_.dispatcher is not None
    assert _quarantined_gauge(client) == {BAD: ("none", 0.0), GOOD: ("none", 0.0)}
    _quarantine_by_storage_errors(farm_.dispatcher, cluster)

    agents = {a["agent_id"]: a for a in client.get("/v1/agents", headers=_auth(USER)).json()}
    held = agents[BAD]["quarantine"]
    assert held["kind"] == "storage" and held["reason"] == "6 object-storage errors in 10 min"
    assert held["since"] == 1_700_000_000.0 and held["probes_failed"] == 0
    assert agents[GOOD]["quarantine"] is None
    assert _quarantined_gauge(client) == {BAD: ("storage", 1.0), GOOD: ("none", 0.0)}

    refused = client.post(f"/v1/agents/{BAD}/release", headers=_auth(USER))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert client.post("/v1/agents/nobody-gpu9/release", headers=_auth(ADMIN)).status_code == 404
    not_held = client.post(f"/v1/agents/{GOOD}/release", headers=_auth(ADMIN))
    assert not_held.status_code == 409 and "not quarantined" in not_held.json()["error"]

    released = client.post(f"/v1/agents/{BAD}/release", headers=_auth(ADMIN))
    assert released.status_code == 200
    assert released.json()["agent_id"] == BAD and released.json()["released"]["kind"] == "storage"
    agents = {a["agent_id"]: a for a in client.get("/v1/agents", headers=_auth(ADMIN)).json()}
    assert agents[BAD]["quarantine"] is None
    assert farm_.store.quarantines() == []
    assert _quarantined_gauge(client)[BAD] == ("none", 0.0)
    assert client.post(f"/v1/agents/{BAD}/release", headers=_auth(ADMIN)).status_code == 409


def test_the_command_line_shows_the_quarantine_and_its_client_releases_it(
    farm: tuple[Farm, FakeCluster], client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    farm_, cluster = farm
    assert farm_.dispatcher is not None
    _quarantine_by_storage_errors(farm_.dispatcher, cluster)
    with serve(client.app) as url:
        http = FarmClient(url, api_key=ADMIN)
        assert agents_command(http) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if "quarantined" in line]
        assert len(lines) == 1 and lines[0].startswith(f"{BAD}: quarantined (storage) since ")
        assert lines[0].endswith("no new work: 6 object-storage errors in 10 min")
        assert http.release_agent(BAD).released.kind == "storage"
        with pytest.raises(FarmError) as again:
            http.release_agent(BAD)
        assert again.value.status == 409
        http.close()


def test_the_release_route_is_in_the_openapi_document(client: TestClient) -> None:
    route = client.get("/openapi.json").json()["paths"]["/v1/agents/{agent_id}/release"]["post"]
    assert {"200", "403", "404", "409"} <= set(route["responses"])
