"""The time limit is visible: every job view carries `deadline_at`, when the reaper's time
limit ends the job (its start plus the run time it was granted), for 1.0 and 1.1 alike."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs import clock
from jobs.spec import DEFAULT_JOB_TIMEOUT_SECONDS
from jobs.states import JobStatus
from services.api.schemas import JobViewV1, JobViewV11
from tests.support.api import V1_BODY, ApiWorld

STARTED_AT = "2026-01-01T10:00:00.000Z"


def _started(world: ApiWorld, body: dict[str, Any]) -> str:
    answer = world.alice.submit(body)
    assert answer.status == 201, answer.body
    job_id = str(answer.body["job_id"])
    assert world.store.transition(job_id, [JobStatus.PENDING], JobStatus.PROVISIONING).ok
    fields = {"started_at": STARTED_AT}
    assert world.store.transition(job_id, [JobStatus.PROVISIONING], JobStatus.RUNNING, set_fields=fields).ok
    return job_id


def _at(seconds: int) -> str:
    return clock.iso(clock.parse_iso(STARTED_AT) + timedelta(seconds=seconds))


@pytest.mark.parametrize(("schema_version", "model"), [("1.0", JobViewV1), ("1.1", JobViewV11)])
def test_a_started_job_shows_its_deadline_in_every_view(
    world: ApiWorld, schema_version: str, model: type[JobViewV1 | JobViewV11]
) -> None:
    job_id = _started(world, {**V1_BODY, "schema_version": schema_version})
    view = world.alice.get(job_id).body
    assert view["deadline_at"] == _at(DEFAULT_JOB_TIMEOUT_SECONDS)
    model.model_validate(view)  # the document declares it
    [listed] = world.alice.list().body["jobs"]
    assert listed["deadline_at"] == view["deadline_at"]
    assert world.alice.cancel(job_id).body["deadline_at"] == view["deadline_at"]


@pytest.mark.parametrize(("asked", "granted"), [(3600, 3600), (0, 7 * 24 * 3600), (-5, 7 * 24 * 3600)])
def test_the_deadline_is_the_run_time_granted(world: ApiWorld, asked: int, granted: int) -> None:
    options = {**V1_BODY["options"], "job_timeout_seconds": asked}
    body = {**V1_BODY, "schema_version": "1.1", "options": options}
    assert world.alice.get(_started(world, body)).body["deadline_at"] == _at(granted)


def test_the_deadline_is_capped_by_the_operators_maximum(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.resources import resources

    monkeypatch.setenv("MAX_JOB_RUNTIME_SECONDS", "7200")
    resources.cache_clear()
    body = {**V1_BODY, "schema_version": "1.1", "options": {**V1_BODY["options"], "job_timeout_seconds": 0}}
    assert world.alice.get(_started(world, body)).body["deadline_at"] == _at(7200)


def test_a_job_not_yet_started_has_no_deadline_yet(world: ApiWorld) -> None:
    job_id = world.alice.submit({**V1_BODY, "schema_version": "1.1"}).body["job_id"]
    view = world.alice.get(job_id).body
    assert "deadline_at" in view and view["deadline_at"] is None


def test_a_start_time_that_does_not_parse_shows_no_deadline(world: ApiWorld) -> None:
    job_id = world.alice.submit({**V1_BODY, "schema_version": "1.1"}).body["job_id"]
    assert world.store.transition(
        job_id, [JobStatus.PENDING], JobStatus.FAILED, set_fields={"started_at": "x"}
    ).ok
    answer = world.alice.get(job_id)
    assert answer.status == 200 and answer.body["deadline_at"] is None
