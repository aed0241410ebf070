"""The worker's reports and the control plane's copy of them into the job item: applied only
to a job still assigned to the reporting instance and attempt (the instance comes from the
report item's key, which IAM lets only that instance write), redacted when the worker fails
unexpectedly. The stream is played here by relaying every new report whenever the worker
waits for one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from control_plane.reports import relay
from jobs import aws, clock
from jobs.attempts import CheckpointState, DatabaseCheckpoint, LossKind, LostAttempt
from jobs.progress import Progress
from jobs.record import CREDENTIALS_ATTRIBUTE, Job
from jobs.reports import REPORT_ATTRIBUTE
from jobs.states import JobStatus
from jobs.store import UNREADABLE_ITEM, JobStore
from jobs.worker_identity import worker_user_id
from local_cloud.resources import create_tables
from tests.support.aws_env import moto_in_process
from tests.support.jobs import new_job
from worker import reports as worker_reports
from worker.reports import Fate, Outcome, Reports

TABLE = "jobs-report-test"
ROLE = "AROAREPORTTESTROLE001"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    with moto_in_process(monkeypatch):
        create_tables(aws.client("dynamodb"), jobs_table=TABLE, api_keys_table="keys-report-test")
        store = JobStore(TABLE)
        relayed: dict[str, int] = {}

        def relay_new_reports(seconds: float) -> None:
            for item in aws.table(TABLE).scan()["Items"]:
                key, report = str(item["job_id"]), item.get(REPORT_ATTRIBUTE)
                if report is not None and relayed.get(key) != report["seq"]:
                    relayed[key] = int(report["seq"])
                    relay(store, ROLE, key, item)

        monkeypatch.setattr(worker_reports.time, "sleep", relay_new_reports)
        yield store


def provisioned(store: JobStore, instance_id: str, attempt: int = 1) -> str:
    store.create(new_job(job_id="job-1"), b"ciphertext", owner_cap=1)
    store.transition(
        "job-1",
        [JobStatus.PENDING],
        JobStatus.PROVISIONING,
        set_fields={"instance_id": instance_id, "attempt": attempt},
    )
    return "job-1"


def reports(store: JobStore, instance_id: str, shutting_down: threading.Event | None = None) -> Reports:
    mine = Reports(
        "job-1",
        instance_id,
        role_id=ROLE,
        table_name=TABLE,
        heartbeat_attempts=2,
        status_attempts=2,
        wait_seconds=1,
        poll_seconds=0.01,
        shutting_down=shutting_down or threading.Event(),
    )
    job = store.get("job-1")
    assert job is not None
    mine.bind(job)
    return mine


def test_a_job_relaunched_on_another_instance_is_not_touched(store: JobStore) -> None:
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000bbbb")
    assert mine.start(progress=Progress(), now_iso=clock.now_iso()).fate is Fate.REFUSED
    assert mine.finish(Outcome(JobStatus.FAILED, "boom"), None).fate is Fate.REFUSED
    assert store.get_credentials("job-1") == b"ciphertext"
    assert store.get("job-1").status is JobStatus.PROVISIONING  # type: ignore[union-attr]


def test_own_job_runs_beats_and_ends_without_credentials(store: JobStore) -> None:
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")
    started = mine.start(progress=Progress.message_only("starting"), now_iso=clock.now_iso())
    assert started.ok and started.job is not None and started.job.started_at is not None
    assert started.job.status is JobStatus.RUNNING
    mine.beat(clock.now_iso(), Progress.message_only("copying"))
    worker_reports.time.sleep(0)  # the stream's record of the beat
    checkpoint = {"db1": DatabaseCheckpoint(key="k1", state=CheckpointState.COPYING, created=True)}
    saved = mine.save_checkpoint(checkpoint)
    assert saved.ok and saved.job is not None and saved.job.progress.message == "copying"
    assert saved.job.checkpoint == checkpoint and saved.job.heartbeat_at is not None
    store.transition("job-1", [JobStatus.RUNNING], JobStatus.CANCELLING)
    seen = mine.beat(clock.now_iso(), None)
    assert seen is not None and seen.status is JobStatus.CANCELLING
    ended = mine.finish(Outcome(JobStatus.CANCELLED, "cancelled on request", 143), None)
    assert ended.ok and ended.job is not None and ended.job.exit_code == 143
    assert ended.job.status is JobStatus.CANCELLED
    raw = aws.table(TABLE).get_item(Key={"job_id": "job-1"})["Item"]
    assert CREDENTIALS_ATTRIBUTE not in raw


def test_a_report_moves_only_the_job_of_the_instance_that_wrote_it(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The instance is the report item's key: a report naming job-1 from another instance,
    another role, or in a form no worker writes changes nothing."""
    provisioned(store, "i-0000000000000aaaa")
    report: dict[str, Any] = {
        "job_id": "job-1", "attempt": 1, "seq": 1, "kind": "outcome", "at": clock.now_iso(),
        "status": "completed", "progress": {"message": "https://phishing.example/login"},
    }  # fmt: skip
    intruder = worker_user_id(ROLE, "i-0000000000000bbbb")
    assert relay(store, ROLE, intruder, {REPORT_ATTRIBUTE: report}) is not None
    other_role = worker_user_id("AROAOTHERROLE00000001", "i-0000000000000aaaa")
    assert relay(store, ROLE, other_role, {REPORT_ATTRIBUTE: report}) is None
    own = worker_user_id(ROLE, "i-0000000000000aaaa")
    with caplog.at_level(logging.ERROR):
        assert relay(store, ROLE, own, {REPORT_ATTRIBUTE: {**report, "status": "pending"}}) is None
        assert relay(store, ROLE, own, {REPORT_ATTRIBUTE: {**report, "instance_id": "i-x"}}) is None
    assert [r for r in caplog.records if r.getMessage() == UNREADABLE_ITEM]
    job = store.get("job-1")
    assert job is not None and job.status is JobStatus.PROVISIONING and job.progress.message == ""
    assert store.get_credentials("job-1") == b"ciphertext"


def test_an_unexpected_error_fails_the_job_without_logging_the_password(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:

    from worker import worker as worker_main

    password = "s3cret-test-pw-unexpected"
    monkeypatch.setenv("JOBS_TABLE_NAME", TABLE)
    monkeypatch.setenv("WORKER_LOG_GROUP", "/test/workers")
    monkeypatch.setenv("WORKER_ROLE_ID", ROLE)
    monkeypatch.setenv("REPORT_POLL_SECONDS", "0.01")
    job_id = provisioned(store, "i-0000000000000cccc")
    worker = worker_main.Worker(
        worker_main.Settings.from_environment(), job_id, "i-0000000000000cccc", threading.Event()
    )

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


def test_an_attempt_handed_back_keeps_its_checkpoint_and_its_late_reports_are_refused(
    store: JobStore,
) -> None:
    provisioned(store, "i-00000000000000f01")
    first = reports(store, "i-00000000000000f01")
    assert first.start(progress=Progress(), now_iso=clock.now_iso()).ok
    done = {"db1": DatabaseCheckpoint(key="k1", state=CheckpointState.DONE, created=True)}
    assert first.save_checkpoint(done).ok
    handed = first.hand_back(
        LossKind.INTERRUPTED, "Spot interruption notice", done, Progress.message_only("copied db1")
    )
    assert handed.ok and handed.job is not None
    assert handed.job.status is JobStatus.PROVISIONING and handed.job.instance_id is None
    assert handed.job.checkpoint == done
    [loss] = handed.job.lost_attempts
    assert loss == LostAttempt(
        attempt=1,
        kind=LossKind.INTERRUPTED,
        reason="Spot interruption notice",
        at=loss.at,
        instance_id="i-00000000000000f01",
    )
    assert store.get_credentials("job-1") == b"ciphertext"  # the next attempt needs them
    # The next attempt is launched on another instance.
    assert store.transition(
        "job-1",
        [JobStatus.PROVISIONING],
        JobStatus.PROVISIONING,
        set_fields={"instance_id": "i-00000000000000f02", "attempt": 2},
        only_if={"attempt": 1},
    ).ok
    # The first instance comes back: every report it makes is refused.
    first.beat(clock.now_iso(), Progress.message_only("late"))
    assert first.save_checkpoint({}).fate is Fate.REFUSED
    assert first.hand_back(LossKind.INTERRUPTED, "again", {}, None).fate is Fate.REFUSED
    assert first.finish(Outcome(JobStatus.COMPLETED, exit_code=0), None).fate is Fate.REFUSED
    after = store.get("job-1")
    assert after is not None and after.attempt == 2 and after.instance_id == "i-00000000000000f02"
    assert after.checkpoint == done and after.progress.message == "copied db1"
    assert after.status is JobStatus.PROVISIONING
    assert store.get_credentials("job-1") == b"ciphertext"


def test_a_late_report_of_the_same_instance_for_an_older_attempt_is_refused(store: JobStore) -> None:
    # EC2 never reuses an instance id, but the condition names the attempt all the same.
    provisioned(store, "i-000000000000005a3e")
    old = reports(store, "i-000000000000005a3e")
    store.transition("job-1", [JobStatus.PROVISIONING], JobStatus.PROVISIONING, set_fields={"attempt": 2})
    assert old.start(progress=Progress(), now_iso=clock.now_iso()).fate is Fate.REFUSED


def test_a_report_the_job_item_cannot_take_fails_the_job_and_is_not_retried(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A retried record would hold up every other record of its stream shard (launches,
    other jobs' reports); a job whose checkpoint cannot be recorded would wait for it for
    ever."""
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")
    assert mine.start(progress=Progress(), now_iso=clock.now_iso()).ok
    assert store.update_active("job-1", {"error": "e" * 200_000}).ok  # a large item already
    bloated = {f"db{n}": DatabaseCheckpoint(key="k" * 390, state=CheckpointState.DONE) for n in range(600)}
    with caplog.at_level(logging.ERROR):
        assert mine.save_checkpoint(bloated).fate is Fate.REFUSED
    assert [r for r in caplog.records if r.getMessage() == UNREADABLE_ITEM]
    job = store.get("job-1")
    assert job is not None and job.status is JobStatus.FAILED and job.checkpoint == {}
    assert job.error is not None
    assert "400 KB" in job.error and "600 databases" in job.error and "include_databases" in job.error
    assert store.get_credentials("job-1") is None


def test_a_heartbeat_the_job_item_cannot_take_is_skipped(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The next heartbeat comes anyway: the job goes on."""
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")
    assert mine.start(progress=Progress(), now_iso=clock.now_iso()).ok
    too_large = ClientError(
        {
            "Error": {
                "Code": "ValidationException",
                "Message": "Item size has exceeded the maximum allowed size",
            }
        },
        "UpdateItem",
    )
    monkeypatch.setattr(store, "update_active", mock.Mock(side_effect=too_large))
    with caplog.at_level(logging.ERROR):
        mine.beat(clock.now_iso(), Progress.message_only("copying"))
        worker_reports.time.sleep(0)  # the stream delivers it
    assert [r for r in caplog.records if r.getMessage() == UNREADABLE_ITEM]
    job = store.get("job-1")
    assert job is not None and job.status is JobStatus.RUNNING
    assert store.get_credentials("job-1") == b"ciphertext"


def test_a_worker_restarted_on_its_instance_waits_for_its_own_reports(store: JobStore) -> None:
    """A second worker process on the same instance (worker.run's restart path) reports after
    the first one's reports were applied: the mark they left must not pass for its own."""
    provisioned(store, "i-0000000000000aaaa")
    first = reports(store, "i-0000000000000aaaa")
    assert first.start(progress=Progress(), now_iso=clock.now_iso()).ok
    for _ in range(3):
        assert first.save_checkpoint({}).ok
    second = reports(store, "i-0000000000000aaaa")
    ended = second.finish(Outcome(JobStatus.FAILED, "the worker restarted while the job was running"), None)
    assert ended.ok and ended.job is not None and ended.job.status is JobStatus.FAILED


def test_a_hand_back_of_a_job_being_cancelled_is_refused_at_once(store: JobStore) -> None:
    """Only a running job can be handed back: once a cancel was asked for, the worker must not
    wait out REPORT_WAIT_SECONDS for a copy that cannot happen, keeping its instance."""
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")
    assert mine.start(progress=Progress(), now_iso=clock.now_iso()).ok
    assert store.transition("job-1", [JobStatus.RUNNING], JobStatus.CANCELLING).ok
    handed = mine.hand_back(LossKind.INTERRUPTED, "Spot interruption notice", {}, None)
    assert handed.fate is Fate.REFUSED
    job = store.get("job-1")
    assert job is not None and job.status is JobStatus.CANCELLING and not job.lost_attempts


def test_a_start_the_launcher_applies_late_is_not_abandoned(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Giving up on a start that is still pending would cost the job an attempt: the worker
    waits past REPORT_WAIT_SECONDS while the job is provisioning for it."""
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")  # waits 1 s for a report
    relay_new_reports = worker_reports.time.sleep  # the fixture's stream
    began = worker_reports.time.monotonic()

    def launcher_lagging_two_seconds(seconds: float) -> None:
        if worker_reports.time.monotonic() - began > 2:
            relay_new_reports(seconds)
        else:
            threading.Event().wait(0.05)  # time.sleep is the stream here

    monkeypatch.setattr(worker_reports.time, "sleep", launcher_lagging_two_seconds)
    assert mine.start(progress=Progress(), now_iso=clock.now_iso()).ok


def test_waiting_for_the_start_ends_when_the_reaper_records_the_instance_lost(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    provisioned(store, "i-0000000000000aaaa")
    mine = reports(store, "i-0000000000000aaaa")
    began = worker_reports.time.monotonic()

    def launcher_down_reaper_after_two_seconds(seconds: float) -> None:
        if worker_reports.time.monotonic() - began > 2:
            # As control_plane.retry.record_loss does after the provisioning grace.
            store.transition(
                "job-1", [JobStatus.PROVISIONING], JobStatus.PROVISIONING, remove_fields=["instance_id"]
            )
        threading.Event().wait(0.05)

    monkeypatch.setattr(worker_reports.time, "sleep", launcher_down_reaper_after_two_seconds)
    started = mine.start(progress=Progress(), now_iso=clock.now_iso())
    assert started.fate is Fate.REFUSED
    assert worker_reports.time.monotonic() - began < 10


def test_waiting_for_the_start_ends_when_the_instance_shuts_down(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    provisioned(store, "i-0000000000000aaaa")
    shutting_down = threading.Event()
    mine = reports(store, "i-0000000000000aaaa", shutting_down)
    threading.Timer(2, shutting_down.set).start()
    monkeypatch.setattr(worker_reports.time, "sleep", lambda seconds: threading.Event().wait(0.05))
    began = worker_reports.time.monotonic()
    started = mine.start(progress=Progress(), now_iso=clock.now_iso())
    assert started.fate is Fate.UNKNOWN
    assert 1.9 < worker_reports.time.monotonic() - began < 10
    assert store.get("job-1").status is JobStatus.PROVISIONING  # type: ignore[union-attr]
