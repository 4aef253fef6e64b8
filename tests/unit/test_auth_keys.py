"""API keys as the README's "API keys" section documents them: `WANFARM_API_KEYS=key:owner:role,...`
(role optional, submit by default) or a JSON file of `{"key", "owner", "role"}` objects."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import ENV_KEYS, KeyConfigError, KeyRing, Principal, Role
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore
from tests.job_records import new_job


def from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> KeyRing:
    monkeypatch.setenv(ENV_KEYS, value)
    return KeyRing.load()


def from_file(tmp_path: Path, rows: object) -> KeyRing:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(rows))
    return KeyRing.load(path)


def caller(keys: KeyRing, key: str) -> Principal | None:
    return keys.authenticate(f"Bearer {key}")


def test_a_variable_key_without_a_role_may_only_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = from_env(monkeypatch, "k-ana:ana, k-root:root:admin ,k-bob:bob:submit")
    assert caller(keys, "k-ana") == Principal("ana", Role.SUBMIT)
    assert caller(keys, "k-root") == Principal("root", Role.ADMIN)
    assert caller(keys, "k-bob") == Principal("bob", Role.SUBMIT)
    assert not keys.open and caller(keys, "k-nobody") is None and caller(keys, "") is None


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("k1:ana,k2:bob:root", ["entry 2", "'root'"]),  # a role that does not exist
        ("k1:ana:", ["entry 1", "''"]),  # an empty role is not "no role"
        ("k1:", ["entry 1", "key:owner[:role]"]),  # no owner
        (":ana", ["entry 1", "key:owner[:role]"]),  # no key
        ("k1", ["entry 1", "key:owner[:role]"]),
        ("k1:ana:admin:extra", ["entry 1", "key:owner[:role]"]),  # never silently an admin
        ("k1:ana,k1:bob:admin", ["entry 2", "given twice"]),  # one key, two owners
    ],
)
def test_a_variable_entry_that_cannot_be_used_is_refused_by_its_number(
    monkeypatch: pytest.MonkeyPatch, value: str, names: list[str]
) -> None:
    with pytest.raises(KeyConfigError) as refused:
        from_env(monkeypatch, value)
    assert all(name in str(refused.value) for name in names), str(refused.value)
    assert ENV_KEYS in str(refused.value)


def test_an_empty_variable_leaves_the_farm_open(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = from_env(monkeypatch, " , ")
    assert keys.open and caller(keys, "anything") == Principal("local", Role.ADMIN)


def test_a_file_key_without_a_role_may_only_submit(tmp_path: Path) -> None:
    keys = from_file(
        tmp_path,
        [
            {"key": "k-ana", "owner": "ana"},
            {"key": "k-root", "owner": "root", "role": "admin"},
            {"key": "k-bob", "owner": "bob", "role": "submit"},
        ],
    )
    assert caller(keys, "k-ana") == Principal("ana", Role.SUBMIT)
    assert caller(keys, "k-root") == Principal("root", Role.ADMIN)
    assert caller(keys, "k-bob") == Principal("bob", Role.SUBMIT)


@pytest.mark.parametrize(
    ("rows", "names"),
    [
        ([{"key": "k", "owner": "ana", "role": "root"}], ["[0]", "'root'"]),
        ([{"key": "k", "owner": "ana"}, {"key": "k2", "owner": ""}], ["[1]", "owner"]),
        ([{"key": "", "owner": "ana"}], ["[0]", "key"]),
        ([{"key": 7, "owner": "ana"}], ["[0]", "key"]),
        ([{"key": "k", "owner": None}], ["[0]", "owner"]),
        ([{"key": "k"}], ["[0]", "owner"]),
        (["k:ana"], ["[0]"]),
        ([{"key": "k", "owner": "ana"}, {"key": "k", "owner": "bob", "role": "admin"}], ["[1]", "twice"]),
        ({"key": "k", "owner": "ana"}, ["JSON list"]),
    ],
)
def test_a_file_entry_that_cannot_be_used_is_refused_by_its_index(
    tmp_path: Path, rows: object, names: list[str]
) -> None:
    with pytest.raises(KeyConfigError) as refused:
        from_file(tmp_path, rows)
    assert all(name in str(refused.value) for name in names), str(refused.value)
    assert "keys.json" in str(refused.value)


def test_a_file_given_wins_over_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEYS, "k-env:eve:admin")
    keys = from_file(tmp_path, [{"key": "k-file", "owner": "fay"}])
    assert caller(keys, "k-env") is None and caller(keys, "k-file") == Principal("fay", Role.SUBMIT)


def test_an_unreadable_key_file_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("[{")
    with pytest.raises(KeyConfigError, match=r"keys\.json: cannot read API keys"):
        KeyRing.load(tmp_path / "keys.json")


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    """The API with keys from the variable, and one job of ana's in its store; yields its id."""
    keys = from_env(monkeypatch, "k-ana:ana,k-bob:bob,k-root:root:admin")
    with JobStore(tmp_path / "jobs.db") as store:
        [stored] = store.add_jobs([new_job()], time.time())
        service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: [], time.time)
        with TestClient(create_app(service, keys, lambda: [])) as http:
            yield http, stored.id


def test_through_the_api_a_role_less_key_sees_only_its_owners_jobs(api: tuple[TestClient, str]) -> None:
    http, job_id = api

    def status(key: str) -> int:
        return http.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).status_code

    assert (status("k-ana"), status("k-bob"), status("k-root"), status("k-wrong")) == (200, 404, 200, 401)
    listed = http.get("/v1/jobs", headers={"Authorization": "Bearer k-bob"})
    assert listed.status_code == 200 and listed.json()["jobs"] == []
