"""The control plane's dependencies, bound once per container."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from control_plane.ports import Claims, Fleet, Owners, Slots
from control_plane.settings import LaunchSettings
from jobs.crypto import CredentialCipher
from jobs.instances import Ec2Fleet
from jobs.job_logs import JobLogGroups
from jobs.owners import OwnerLedger
from jobs.slots import LaunchClaims, SlotLedger
from jobs.store import JobStore


@dataclass(frozen=True)
class ControlPlane:
    settings: LaunchSettings
    jobs: JobStore  # tests: tests.support.fakes.FakeJobs, with the same conditional writes
    slots: Slots
    claims: Claims
    fleet: Fleet
    owners: Owners
    # Names this launcher in launch claims.
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Re-encrypts a job's credentials for the instance launched for it; None: not bound
    # (unit tests of the launch logic), and then no worker can decrypt them.
    keys: CredentialCipher | None = None
    # Creates each job's log group and hands it to the instance launched for it; None: no
    # log groups (unit tests of the launch logic), and then no worker can write its logs.
    job_logs: JobLogGroups | None = None

    @classmethod
    def on_aws(cls, settings: LaunchSettings) -> ControlPlane:
        table = settings.jobs_table_name
        return cls(
            settings,
            JobStore(table),
            SlotLedger(table),
            LaunchClaims(table),
            Ec2Fleet(settings.managed_by),
            OwnerLedger(table),
            keys=CredentialCipher(settings.kms_key_id) if settings.kms_key_id else None,
            job_logs=JobLogGroups(
                settings.worker_log_group,
                arn_prefix=settings.log_group_arn_prefix,
                retention_days=settings.job_log_retention_days,
                kms_key_id=settings.job_log_kms_key_id,
            )
            if settings.kms_key_id
            else None,
        )
