"""A job's attempts: each runs on a new instance. What is recorded when one is lost to the
infrastructure, and the per-database checkpoint a later attempt resumes from. No AWS imports.

A loss is one conditional write (the worker's hand-back on an interruption, or the
reaper's on a lost instance or heartbeat): the job leaves `running` (or a `provisioning`
whose worker never started) for `provisioning` without an instance, and the attempt's
reason joins `lost_attempts`. The control plane then starts the next attempt, or fails the
job when the attempts are used up (`control_plane.retry`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class LossKind(StrEnum):
    INTERRUPTED = "interrupted"  # a Spot interruption notice, or the instance shutting down
    INSTANCE_LOST = "instance_lost"  # terminated, stopped, failed status checks
    HEARTBEAT_LOST = "heartbeat_lost"  # the worker stopped writing
    NEVER_STARTED = "never_started"  # the worker did not start on its instance


class LostAttempt(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    attempt: int
    kind: LossKind
    reason: str
    at: str
    instance_id: str | None = None

    def describe(self) -> str:
        return f"attempt {self.attempt}: {self.reason}"


class CheckpointState(StrEnum):
    COPYING = "copying"  # the copy had started and not finished
    DONE = "done"  # data, indexes, constraints and sequences copied


class DatabaseCheckpoint(BaseModel):
    """One target database as an attempt left it. `key` names what it was copied from (the
    source database and the job's filter, as the engine computes it): another key means the
    entry no longer describes this copy. `created`: this job created (or, with
    `drop_existing`, replaced) the target database, so a later attempt may drop it.
    `found_empty`: the target database existed (the user's) and this job found it empty
    before it wrote into it, so a later attempt may empty it again (never drop it), if it is
    still that database: `database_oid`, its OID then (one the user made again since is theirs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    state: CheckpointState
    created: bool = False
    found_empty: bool = False
    database_oid: int | None = None


def loss_fields(lost: list[LostAttempt], loss: LostAttempt) -> dict[str, Any]:
    """The fields a loss write sets, next to removing `instance_id`."""
    return {"lost_attempts": [entry.model_dump(mode="json") for entry in [*lost, loss]]}


def attempts_error(lost: list[LostAttempt], max_attempts: int) -> str:
    reasons = "; ".join(entry.describe() for entry in lost)
    return f"Gave up after {max_attempts} attempts lost to the infrastructure: {reasons}"
