"""The worker's writes to its job's item: only on a job still assigned to its instance, and
redacted when the worker fails unexpectedly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs import aws, clock
from jobs.progress import Progress
from jobs.record import CREDENTIALS_ATTRIBUTE, Job
from jobs.states import JobStatus
from jobs.store import JobStore
from local_cloud.resources import create_tables
from tests.support.aws_env import moto_in_process
from tests.support.jobs import new_job
from worker.job_item import JobItem, Outcome

TABLE = "jobs-item-test"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    with moto_in_process(monkeypatch):
        create_tables(aws.client("dynamodb"), jobs_table=TABLE, api_keys_table="keys-item-test")
        yield JobStore(TABLE)


def provisioned(store: JobStore, instance_id: str) -> str:
    store.create(new_job(job_id="job-1"), b"ciphertext", owner_cap=1)
    store.transition(
        "job-1", [JobStatus.PENDING], JobStatus.PROVISIONING, set_fields={"instance_id": instance_id}
    )
    return "job-1"


def item(store: JobStore, instance_id: str) -> JobItem:
    return JobItem("job-1", instance_id, table_name=TABLE, heartbeat_attempts=2, status_attempts=2)


def test_a_job_relaunched_on_another_instance_is_not_touched(store: JobStore) -> None:
    provisioned(store, "i-other")
    mine = item(store, "i-mine")
    assert not mine.start(progress=Progress(), now_iso=clock.now_iso()).ok
    assert not mine.finish(Outcome(JobStatus.FAILED, "boom"), None).ok
    mine.wipe_credentials()
    assert store.get_credentials("job-1") == b"ciphertext"
    assert store.get("job-1").status is JobStatus.PROVISIONING  # type: ignore[union-attr]


def test_own_job_runs_beats_and_ends_without_credentials(store: JobStore) -> None:
    provisioned(store, "i-mine")
    mine = item(store, "i-mine")
    started = mine.start(progress=Progress.message_only("starting"), now_iso=clock.now_iso())
    assert started.ok and started.job is not None and started.job.started_at is not None
    beat = mine.beat(clock.now_iso(), Progress.message_only("copying"))
    assert beat.ok and beat.job is not None and beat.job.progress.message == "copying"
    store.transition("job-1", [JobStatus.RUNNING], JobStatus.CANCELLING)
    seen = mine.beat(clock.now_iso(), None)
    assert seen.ok and seen.job is not None and seen.job.status is JobStatus.CANCELLING
    ended = mine.finish(Outcome(JobStatus.CANCELLED, "cancelled on request", 143), None)
    assert ended.ok and ended.job is not None and ended.job.exit_code == 143
    raw = aws.table(TABLE).get_item(Key={"job_id": "job-1"})["Item"]
    assert CREDENTIALS_ATTRIBUTE not in raw
    assert not mine.beat(clock.now_iso(), None).ok  # terminal: no more heartbeats


def test_an_unexpected_error_fails_the_job_without_logging_the_password(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from worker import worker as worker_main

    password = "s3cret-test-pw-unexpected"
    monkeypatch.setenv("JOBS_TABLE_NAME", TABLE)
    monkeypatch.setenv("WORKER_LOG_GROUP", "/test/workers")
    job_id = provisioned(store, "i-ours")
    worker = worker_main.Worker(worker_main.Settings.from_environment(), job_id, "i-ours", threading.Event())

    def explode(job: Job) -> None:
        worker.secrets = [f"postgresql://u:{password}@db:5432/a", password]
        raise RuntimeError(f"could not use postgresql://u:{password}@db:5432/a ({password})")

    monkeypatch.setattr(worker, "_run_provisioned", explode)
    worker.run()

    ended = store.get(job_id)
    assert ended is not None and ended.status is JobStatus.FAILED
    assert ended.error is not None and "RuntimeError" in ended.error and password not in ended.error
    assert [r for r in caplog.records if r.getMessage() == "worker failed"]
    # Every field of every record, the exception info included.
    assert password not in " ".join(str(vars(record)) for record in caplog.records)


def test_an_attempt_handed_back_keeps_its_checkpoint_and_its_late_writes_are_refused(store: JobStore) -> None:
    from jobs.attempts import CheckpointState, DatabaseCheckpoint, LossKind, LostAttempt

    provisioned(store, "i-first")
    first = item(store, "i-first")
    first.bind(store.get("job-1"))  # type: ignore[arg-type]
    assert first.start(progress=Progress(), now_iso=clock.now_iso()).ok
    done = {"db1": DatabaseCheckpoint(key="k1", state=CheckpointState.DONE, created=True)}
    assert first.save_checkpoint(done).ok
    loss = LostAttempt(
        attempt=0, kind=LossKind.INTERRUPTED, reason="Spot interruption notice", at=clock.now_iso()
    )
    handed = first.hand_back(loss, [], done, Progress.message_only("copied db1"))
    assert handed.ok and handed.job is not None
    assert handed.job.status is JobStatus.PROVISIONING and handed.job.instance_id is None
    assert handed.job.checkpoint == done and handed.job.lost_attempts == [loss]
    assert store.get_credentials("job-1") == b"ciphertext"  # the next attempt needs them
    # The next attempt is launched on another instance.
    assert store.transition(
        "job-1",
        [JobStatus.PROVISIONING],
        JobStatus.PROVISIONING,
        set_fields={"instance_id": "i-second", "attempt": 1},
        only_if={"attempt": 0},
    ).ok
    # The first instance comes back: every write it tries is refused.
    assert not first.beat(clock.now_iso(), Progress.message_only("late")).ok
    assert not first.save_checkpoint({}).ok
    assert not first.hand_back(loss, [], {}, None).ok
    assert not first.finish(Outcome(JobStatus.COMPLETED, exit_code=0), None).ok
    first.wipe_credentials()
    after = store.get("job-1")
    assert after is not None and after.attempt == 1 and after.instance_id == "i-second"
    assert after.checkpoint == done and after.progress.message == "copied db1"
    assert store.get_credentials("job-1") == b"ciphertext"


def test_a_late_write_of_the_same_instance_for_an_older_attempt_is_refused(store: JobStore) -> None:
    # EC2 never reuses an instance id, but the condition names the attempt all the same.
    provisioned(store, "i-same")
    old = item(store, "i-same")
    old.bind(store.get("job-1"))  # type: ignore[arg-type]
    store.transition("job-1", [JobStatus.PROVISIONING], JobStatus.PROVISIONING, set_fields={"attempt": 1})
    assert not old.start(progress=Progress(), now_iso=clock.now_iso()).ok
