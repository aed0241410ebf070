"""The status machine as data, and as the job store enforces it on DynamoDB (moto):
no sequence of writes leaves a terminal status; two concurrent writers of different
outcomes produce exactly one.

DynamoDB applies each write to an item atomically; moto in-process does not (two threads
can interleave inside one conditional update), so the fixture gives moto's write
operations the per-request atomicity DynamoDB has. What the race test then checks is ours:
that both writers' updates are conditional on the status they leave.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.dynamodb.models import DynamoDBBackend

from jobs import clock
from jobs.states import ACTIVE, TERMINAL, TRANSITIONS, V1_STATUS, JobStatus, can_transition, status_for_client
from jobs.store import JobStore
from local_cloud.resources import create_tables
from tests.support.aws_env import moto_in_process
from tests.support.jobs import new_job

TABLE = "unit-jobs"


def test_terminal_statuses_have_no_successors_and_active_ones_can_end() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
    for status in ACTIVE:
        assert TRANSITIONS[status] & TERMINAL, status


def test_every_status_is_reachable_from_pending() -> None:
    seen, frontier = {JobStatus.PENDING}, [JobStatus.PENDING]
    while frontier:
        for successor in TRANSITIONS[frontier.pop()]:
            if successor not in seen:
                seen.add(successor)
                frontier.append(successor)
    assert seen == set(JobStatus)


@pytest.mark.parametrize("status", list(JobStatus))
def test_v1_clients_see_four_words_and_every_end_stops_their_polling(status: JobStatus) -> None:
    shown, error = status_for_client(status, "1.0", None)
    assert shown in {"provisioning", "running", "completed", "failed"} and shown == V1_STATUS[status]
    assert (shown in {"completed", "failed"}) == status.is_terminal
    if status in (JobStatus.TIMEOUT, JobStatus.CANCELLED):
        assert error
    assert status_for_client(status, "1.1", "x") == (status.value, "x")


@pytest.fixture(scope="module")
def store() -> Iterator[JobStore]:
    with pytest.MonkeyPatch.context() as patch:
        _make_writes_atomic(patch)
        with moto_in_process(patch):
            create_tables(boto3.client("dynamodb"), jobs_table=TABLE, api_keys_table="unit-keys")
            yield JobStore(TABLE)


def _make_writes_atomic(patch: pytest.MonkeyPatch) -> None:
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        patch.setattr(DynamoDBBackend, name, atomic)


def _new_job(store: JobStore) -> str:
    job = new_job(owner="alice", retention=timedelta(days=1))
    assert store.create(job, b"ciphertext", owner_cap=10_000).created
    return job.job_id


LEGAL_WRITES = [(source, target) for source, targets in TRANSITIONS.items() for target in targets]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.sampled_from(LEGAL_WRITES), max_size=15))
def test_no_sequence_of_writes_leaves_a_terminal_status(
    store: JobStore, writes: list[tuple[JobStatus, JobStatus]]
) -> None:
    job_id = _new_job(store)
    status = JobStatus.PENDING
    for source, target in writes:
        result = store.transition(job_id, [source], target)
        assert result.ok == (status == source), (status, source, target)
        if result.ok:
            assert can_transition(status, target)
            status = target
        heartbeat = store.update_active(job_id, {"heartbeat_at": clock.now_iso()})
        assert heartbeat.ok == (status in (JobStatus.RUNNING, JobStatus.CANCELLING))
        stored = store.get(job_id)
        assert stored is not None and stored.status == status
        if status.is_terminal:
            assert store.get_credentials(job_id) is None


@pytest.mark.parametrize("round_number", range(10))
def test_two_concurrent_writers_of_different_outcomes_produce_exactly_one(
    store: JobStore, round_number: int
) -> None:
    job_id = _new_job(store)
    for target in (JobStatus.PROVISIONING, JobStatus.RUNNING):
        current = store.get(job_id)
        assert current is not None and store.transition(job_id, [current.status], target).ok
    barrier = threading.Barrier(2)
    results: dict[JobStatus, bool] = {}

    def write(outcome: JobStatus) -> None:
        barrier.wait()
        results[outcome] = store.transition(job_id, [JobStatus.RUNNING], outcome).ok

    writers = [threading.Thread(target=write, args=(o,)) for o in (JobStatus.COMPLETED, JobStatus.FAILED)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    winners = [outcome for outcome, ok in results.items() if ok]
    assert len(winners) == 1, results
    stored = store.get(job_id)
    assert stored is not None and stored.status == winners[0]
