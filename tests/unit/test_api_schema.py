"""The API keeps the promises of its own /openapi.json: schemathesis sends each operation a bounded,
seeded set of generated requests (valid and invalid) and checks that none answers a 5xx, every
status is documented, and every body and header matches its documented schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.jobs import NewJob
from controller.service import FarmService
from controller.store import JobStore
from gpu_agent.storage import LocalStore, ObjectStore
from tests.job_records import new_job

KEY = "schema-key"
SEED = 13
EXAMPLES = 15  # per operation: the whole run stays well under a minute on one core


def _keys() -> KeyRing:
    return KeyRing({KEY: Principal("ana", Role.ADMIN)})


def _schema() -> schemathesis.schemas.BaseSchema:
    """The schema as the app serves it, read at collection from an app whose service is never
    called (the requests go to the `app` fixture's, over a real store)."""
    unused = FarmService(cast(JobStore, None), cast(ObjectStore, None), list, time.time)
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(unused, _keys(), list), config=SchemathesisConfig(seed=SEED)
    )
    schema.config.generation.update(max_examples=EXAMPLES, database="none")
    schema.config.update(headers={"Authorization": f"Bearer {KEY}"})
    return schema


schema = _schema()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    folder = tmp_path_factory.mktemp("schema-farm")
    with JobStore(folder / "jobs.db") as store:
        # One stored job, so that its routes answer more than 404 when its id comes up.
        store.add_jobs([_job()], 1_700_000_000.0)
        service = FarmService(store, LocalStore(folder / "objects"), list, time.time)
        yield create_app(service, _keys(), list)


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case, app: FastAPI) -> None:
    # Not "schema-valid input is accepted": a settings object or a queue.zip is valid only once the
    # catalogue and WanGP's rules say so (a 422 naming the key), which no JSON Schema spells.
    case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance])


def _job() -> NewJob:
    return new_job(settings={"model_type": "wan-tiny", "prompt": "a fox", "seed": 7})


def test_the_schema_documents_every_refusal_in_the_error_shape() -> None:
    spec = schema.raw_schema
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert "application/json" in submit["requestBody"]["content"]
    assert {"400", "401", "409", "413", "415", "422"} <= submit["responses"].keys()
    assert {"404", "409"} <= spec["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"].keys()
    assert "multipart/form-data" in spec["paths"]["/v1/queues"]["post"]["requestBody"]["content"]
    for path, method, operation in operations:
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_a_listing_documents_summaries_without_settings(tmp_path: Path) -> None:
    listing = schema.raw_schema["components"]["schemas"]["JobList"]["properties"]["jobs"]["items"]
    summary = schema.raw_schema["components"]["schemas"][listing["$ref"].rsplit("/", 1)[-1]]
    assert "settings" not in summary["properties"] and "prompt" not in str(summary)
