"""Data access for EC2: start a worker from the launch template, find the instances this
deployment owns, terminate.

An instance belongs to a deployment when its `ManagedBy` tag carries that deployment's
name; `JobId` and `Attempt` tie it to one launch attempt of one job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from jobs import aws
from jobs.dynamo import error_code, error_message

TAG_JOB_ID = "JobId"
TAG_ATTEMPT = "Attempt"
TAG_MANAGED_BY = "ManagedBy"
TAG_PROJECT = "Project"
TAG_NAME = "Name"
LIVE_STATES = ("pending", "running")
# EC2 answers a capacity shortage with HTTP 500, which botocore retries like any 5xx: with
# the default budget every subnet and type would cost six backed-off attempts before the
# next one is tried. Three still absorb a burst of throttling; throttling that outlasts
# them fails the stream record, which is delivered again.
RUN_INSTANCES_ATTEMPTS = 3

# No capacity for this type in this subnet's zone: another subnet or type may have it.
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientFreeAddressesInSubnet",
        "InsufficientCapacity",
        "Unsupported",
    }
)
# No Spot capacity (or none at the price) for this type in this subnet's zone: on-demand may have it.
SPOT_CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
    }
)
# Configuration or permission problems: retrying the same request cannot succeed.
PERMANENT_ERRORS = frozenset(
    {"UnauthorizedOperation", "AuthFailure", "OptInRequired", "Blocked", "MissingParameter"}
)


def is_permanent(code: str) -> bool:
    """InvalidAMIID.*, InvalidParameterValue, InvalidLaunchTemplateId.*, ... and the above."""
    return code in PERMANENT_ERRORS or code.startswith("Invalid")


class Market(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    instance_type: str
    launch_time: datetime | None
    job_id: str | None
    attempt: int | None
    market: Market = Market.ON_DEMAND


@dataclass(frozen=True)
class LaunchRequest:
    job_id: str
    attempt: int
    project: str
    launch_template_id: str
    launch_template_version: str
    instance_types: Sequence[str]  # the preferred one first, then the fallbacks
    subnet_ids: Sequence[str]  # empty: the launch template's own network settings
    user_data: str
    markets: Sequence[Market] = (Market.ON_DEMAND,)  # tried in order

    @property
    def client_token(self) -> str:
        # One token per job attempt: EC2 starts at most one instance for it. A token is only
        # bound to the parameters of a request that succeeded, so fallbacks may reuse it.
        return f"{self.job_id}:{self.attempt}"[:64]


class LaunchError(Exception):
    """RunInstances failed after botocore's retries, or every subnet/type lacked capacity."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return is_permanent(self.code)

    @property
    def no_capacity(self) -> bool:
        return self.code in CAPACITY_ERRORS

    @property
    def no_spot_capacity(self) -> bool:
        return self.code in SPOT_CAPACITY_ERRORS


class Ec2Fleet:
    """The instances of one deployment (tag `ManagedBy` = `managed_by`) on EC2: the control
    plane's fleet. Tests hand the control plane an in-memory fleet instead."""

    def __init__(self, managed_by: str) -> None:
        self.managed_by = managed_by

    def launch(self, request: LaunchRequest) -> Instance:
        """Start one instance for the request: for each market in order (Spot, then
        on-demand), each subnet for each type in order."""
        subnets: list[str | None] = list(request.subnet_ids) or [None]
        last: LaunchError | None = None
        for market in request.markets:
            for instance_type in request.instance_types:
                for subnet_id in subnets:
                    try:
                        return self._run_one(request, instance_type, subnet_id, market)
                    except ClientError as exc:
                        error = LaunchError(error_code(exc) or "Unknown", error_message(exc))
                        spot_short = market is Market.SPOT and error.no_spot_capacity
                        if not (error.no_capacity or spot_short):
                            raise error from exc
                        last = error
        assert last is not None  # at least one market and type are always requested
        raise last

    def _run_one(
        self, request: LaunchRequest, instance_type: str, subnet_id: str | None, market: Market
    ) -> Instance:
        tags = [
            {"Key": TAG_JOB_ID, "Value": request.job_id},
            {"Key": TAG_ATTEMPT, "Value": str(request.attempt)},
            {"Key": TAG_MANAGED_BY, "Value": self.managed_by},
            {"Key": TAG_PROJECT, "Value": request.project},
            {"Key": TAG_NAME, "Value": f"{request.project}-worker-{request.job_id}"},
        ]
        kwargs: dict[str, Any] = {
            "LaunchTemplate": {
                "LaunchTemplateId": request.launch_template_id,
                "Version": request.launch_template_version,
            },
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": request.client_token,
            "UserData": request.user_data,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if subnet_id:
            kwargs["SubnetId"] = subnet_id
        if market is Market.SPOT:
            # One-time, terminated on interruption: the job goes on as its next attempt.
            kwargs["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        answer = aws.client("ec2", total_attempts=RUN_INSTANCES_ATTEMPTS).run_instances(**kwargs)
        return _instance(answer["Instances"][0])

    def find_attempt(self, job_id: str, attempt: int) -> Instance | None:
        """The live instance started for this job attempt, if any (a launcher that died after
        RunInstances leaves one behind)."""
        found = _describe(
            [
                {"Name": f"tag:{TAG_MANAGED_BY}", "Values": [self.managed_by]},
                {"Name": f"tag:{TAG_JOB_ID}", "Values": [job_id]},
                {"Name": f"tag:{TAG_ATTEMPT}", "Values": [str(attempt)]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )
        return found[0] if found else None

    def describe_ours(self) -> list[Instance]:
        """Every pending or running instance of this deployment."""
        return _describe(
            [
                {"Name": f"tag:{TAG_MANAGED_BY}", "Values": [self.managed_by]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )

    def terminate(self, instance_ids: Iterable[str]) -> None:
        """Terminate instances; one that is already gone is not an error."""
        terminate(instance_ids)

    def state_reason(self, instance_id: str) -> str | None:
        """Why the instance left the running state ("Code: message"): EC2 keeps a terminated
        instance visible for about an hour."""
        try:
            answer = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return None
            raise
        for reservation in answer.get("Reservations", []):
            for raw in reservation.get("Instances", []):
                reason = raw.get("StateReason") or {}
                if reason.get("Code"):
                    return f"{reason['Code']}: {reason.get('Message', '')}".rstrip(": ")
        return None


def terminate(instance_ids: Iterable[str]) -> None:
    """Terminate instances by id (the worker ends its own instance with this)."""
    ids = sorted(set(instance_ids))
    if not ids:
        return
    try:
        aws.client("ec2").terminate_instances(InstanceIds=ids)
    except ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
        if len(ids) > 1:  # one unknown id fails the whole call: end the others one by one
            for instance_id in ids:
                terminate([instance_id])


def _describe(filters: list[dict[str, Any]]) -> list[Instance]:
    paginator = aws.client("ec2").get_paginator("describe_instances")
    found: list[Instance] = []
    for page in paginator.paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(_instance(raw) for raw in reservation.get("Instances", []))
    return found


def _instance(raw: dict[str, Any]) -> Instance:
    tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])}
    attempt = tags.get(TAG_ATTEMPT)
    return Instance(
        instance_id=raw["InstanceId"],
        state=raw.get("State", {}).get("Name", "unknown"),
        instance_type=raw.get("InstanceType", ""),
        launch_time=raw.get("LaunchTime"),
        job_id=tags.get(TAG_JOB_ID),
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        market=Market.SPOT if raw.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND,
    )
