"""In-memory fakes of the control plane's ports: the same conditional semantics as
DynamoDB and EC2 (a write names the statuses it leaves, a lost race comes back as a
result), without either, so control-plane decisions are tested in microseconds."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest

from control_plane.context import ControlPlane
from control_plane.telemetry import metrics
from jobs import clock
from jobs.instances import Instance, LaunchError, LaunchRequest
from jobs.record import ACTIVE_INDEX_KEY, Job
from jobs.slots import Grant, OwnerLimit
from jobs.states import ACTIVE, JobStatus, can_transition
from jobs.store import WriteResult
from services.reaper.settings import Settings as ReaperSettings


class FakeJobs:
    def __init__(self, *jobs: Job) -> None:
        self.items: dict[str, Job] = {job.job_id: job for job in jobs}

    def put(self, job: Job) -> Job:
        self.items[job.job_id] = job
        return job

    def get(self, job_id: str, *, include_expired: bool = False) -> Job | None:
        job = self.items.get(job_id)
        if job is None or (not include_expired and job.is_expired(clock.epoch(clock.now()))):
            return None
        return job

    def transition(
        self, job_id: str, from_statuses: Iterable[JobStatus], to_status: JobStatus, **change: Any
    ) -> WriteResult:
        """As JobStore.transition; `change` holds set_fields, remove_fields, only_if."""
        sources = set(from_statuses)
        assert all(can_transition(s, to_status) for s in sources), "not a legal transition"
        fields: dict[str, Any] = {"status": to_status, **(change.get("set_fields") or {})}
        if to_status not in ACTIVE:
            fields.setdefault("completed_at", clock.now_iso())
        return self._update(job_id, sources, fields, change.get("remove_fields", ()), change.get("only_if"))

    def update_active(self, job_id: str, set_fields: dict[str, Any], **where: Any) -> WriteResult:
        """As JobStore.update_active; `where` holds statuses and only_if."""
        statuses = set(where.get("statuses", (JobStatus.RUNNING, JobStatus.CANCELLING)))
        return self._update(job_id, statuses, dict(set_fields), (), where.get("only_if"))

    def active_jobs(self, status: JobStatus) -> Iterator[Job]:
        yield from sorted(
            (job for job in self.items.values() if job.status is status), key=lambda job: job.created_at
        )

    def delete_expired(self, job_id: str, now_epoch: int) -> bool:
        job = self.items.get(job_id)
        if job is None or not job.is_expired(now_epoch):
            return False
        del self.items[job_id]
        return True

    def _update(
        self,
        job_id: str,
        sources: set[JobStatus],
        fields: dict[str, Any],
        removals: Iterable[str],
        only_if: dict[str, Any] | None,
    ) -> WriteResult:
        job = self.items.get(job_id)
        if job is None:
            return WriteResult(ok=False, job=None)
        if job.status not in sources or any(getattr(job, k) != v for k, v in (only_if or {}).items()):
            return WriteResult(ok=False, job=job)
        item = {**job.model_dump(), **fields, "updated_at": clock.now_iso()}
        for name in removals:
            item.pop(name, None)
        item.pop(ACTIVE_INDEX_KEY, None)
        self.items[job_id] = Job.model_validate(item)
        return WriteResult(ok=True, job=self.items[job_id])


@dataclass
class FakeSlots:
    claims: FakeClaims
    held: set[str] = field(default_factory=set)
    by_owner: dict[str, set[str]] = field(default_factory=dict)

    def acquire(self, job_id: str, max_slots: int, owner: OwnerLimit | None = None) -> Grant:
        if job_id not in self.held:
            if len(self.held) >= max_slots:
                return Grant.FULL
            if owner is not None and len(self.by_owner.get(owner.owner, ())) >= owner.max_slots:
                return Grant.OWNER_AT_LIMIT
        self.held.add(job_id)
        if owner is not None:
            self.by_owner.setdefault(owner.owner, set()).add(job_id)
        return Grant.TAKEN

    def has_room(self, max_slots: int, owner: OwnerLimit | None = None) -> bool:
        if len(self.held) >= max_slots:
            return False
        return owner is None or len(self.by_owner.get(owner.owner, ())) < owner.max_slots

    def release(self, job_id: str) -> None:
        self.release_all([job_id])

    def holders(self) -> set[str]:
        return set(self.held)

    def release_all(self, job_ids: Iterable[str]) -> None:
        self.held -= set(job_ids)
        for owner, held in list(self.by_owner.items()):
            held -= set(job_ids)
            if not held:
                del self.by_owner[owner]

    def release_unless_launching(self, job: Job, *, now_epoch: int) -> bool:
        if self.claims.in_flight(job.job_id, job.attempt + 1, now_epoch=now_epoch):
            return False
        self.release_all([job.job_id])
        return True

    def restore(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.held.add(job.job_id)
            self.by_owner.setdefault(job.owner, set()).add(job.job_id)


@dataclass
class FakeOwners:
    unfinished: dict[str, set[str]] = field(default_factory=dict)

    def release(self, owner: str, job_ids: Iterable[str]) -> None:
        self.unfinished.get(owner, set()).difference_update(job_ids)


@dataclass
class FakeClaims:
    holders: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)  # -> (holder, lease until)

    def claim(self, job_id: str, attempt: int, holder: str, *, now_epoch: int, lease_seconds: int) -> bool:
        current = self.holders.get((job_id, attempt))
        if current is not None and current[0] != holder and current[1] >= now_epoch:
            return False
        self.holders[(job_id, attempt)] = (holder, now_epoch + lease_seconds)
        return True

    def in_flight(self, job_id: str, attempt: int, *, now_epoch: int) -> bool:
        return self.holders.get((job_id, attempt), ("", -1))[1] >= now_epoch

    def release(self, job_id: str, attempt: int, holder: str) -> None:
        if self.holders.get((job_id, attempt), ("", 0))[0] == holder:
            del self.holders[(job_id, attempt)]


@dataclass
class FakeFleet:
    """Instances by id; `refuse` holds the EC2 error codes the next runs fail with."""

    instances: dict[str, Instance] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    runs: list[LaunchRequest] = field(default_factory=list)
    state_reasons: dict[str, str] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def start(self, job_id: str | None, attempt: int | None, *, launched: datetime | None = None) -> Instance:
        instance = Instance(
            instance_id=f"i-{next(self._ids):017x}",
            state="running",
            instance_type="t3.medium",
            launch_time=launched or clock.now(),
            job_id=job_id,
            attempt=attempt,
        )
        self.instances[instance.instance_id] = instance
        return instance

    def launch(self, request: LaunchRequest) -> Instance:
        self.runs.append(request)
        if self.refuse:
            code = self.refuse.pop(0)
            raise LaunchError(code, f"refused with {code}")
        instance = self.start(request.job_id, request.attempt)
        instance = replace(instance, market=request.markets[0])
        self.instances[instance.instance_id] = instance
        return instance

    def find_attempt(self, job_id: str, attempt: int) -> Instance | None:
        return next((i for i in self.instances.values() if (i.job_id, i.attempt) == (job_id, attempt)), None)

    def describe_ours(self) -> list[Instance]:
        return list(self.instances.values())

    def state_reason(self, instance_id: str) -> str | None:
        return self.state_reasons.get(instance_id)

    def terminate(self, instance_ids: Iterable[str]) -> None:
        for instance_id in sorted(set(instance_ids)):
            if self.instances.pop(instance_id, None) is not None:
                self.terminated.append(instance_id)


SERVICE_NAME = "control-plane-test"
METRICS_NAMESPACE = "RemoteReplicationTest"


def use_test_metrics(patch: pytest.MonkeyPatch) -> None:
    """Powertools read their environment when the handler modules were imported (at
    collection): name the test namespace here, and drop what earlier tests added without a
    handler to flush it."""
    patch.setenv("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)  # single_metric reads it
    patch.setattr(metrics, "namespace", METRICS_NAMESPACE)
    patch.setattr(metrics, "service", SERVICE_NAME)
    metrics.clear_metrics()


SETTINGS = dict(
    jobs_table_name="fake-jobs",
    aws_region="us-east-1",
    launch_template_id="lt-fake",
    worker_log_group="/fake/workers",
    worker_role_id="AROAFAKEWORKERROLE01",
    max_concurrent_jobs=2,
)


def fake_control_plane(*jobs: Job, **settings: Any) -> ControlPlane:
    """A control plane on fakes; `settings` override the reaper settings' defaults (a
    superset of the launcher's)."""
    claims = FakeClaims()
    return ControlPlane(
        ReaperSettings(**{**SETTINGS, **settings}),
        FakeJobs(*jobs),
        FakeSlots(claims),
        claims,
        FakeFleet(),
        FakeOwners({job.owner: {j.job_id for j in jobs if j.owner == job.owner} for job in jobs}),
    )
