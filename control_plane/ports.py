"""What the control plane needs from the outside, as protocols: the slot ledger, the owner
ledger, the launch claims and the fleet of instances (the jobs table is `jobs.store.JobStore`'s interface).
`ControlPlane.on_aws` binds them to DynamoDB and EC2; the tests bind in-memory fakes
(tests/support/fakes.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from jobs.instances import Instance, LaunchRequest
from jobs.record import Job
from jobs.slots import Grant, OwnerLimit


class Slots(Protocol):
    def acquire(self, job_id: str, max_slots: int, owner: OwnerLimit | None = None) -> Grant: ...

    def has_room(self, max_slots: int, owner: OwnerLimit | None = None) -> bool: ...

    def release(self, job_id: str) -> None: ...

    def holders(self) -> set[str]: ...

    def release_all(self, job_ids: Iterable[str]) -> None: ...

    def release_unless_launching(self, job: Job, *, now_epoch: int) -> bool: ...

    def restore(self, jobs: Iterable[Job]) -> None: ...


class Owners(Protocol):
    def release(self, owner: str, job_ids: Iterable[str]) -> None: ...


class Claims(Protocol):
    def claim(
        self, job_id: str, attempt: int, holder: str, *, now_epoch: int, lease_seconds: int
    ) -> bool: ...

    def in_flight(self, job_id: str, attempt: int, *, now_epoch: int) -> bool: ...

    def release(self, job_id: str, attempt: int, holder: str) -> None: ...


class Fleet(Protocol):
    """The instances of this deployment."""

    def launch(self, request: LaunchRequest) -> Instance: ...

    def find_attempt(self, job_id: str, attempt: int) -> Instance | None: ...

    def describe_ours(self) -> list[Instance]: ...

    def terminate(self, instance_ids: Iterable[str]) -> None: ...

    def state_reason(self, instance_id: str) -> str | None:
        """Why the instance left the running state ("Code: message"), if EC2 says."""
        ...
