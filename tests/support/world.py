"""A control-plane world on moto for the launcher and reaper tests: the jobs table, a VPC
with two subnets, a worker launch template, settings, and helpers to arrange jobs and
instances explicitly, build stream records as DynamoDB delivers them, and inject EC2
errors below botocore's retry layer."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from control_plane.context import ControlPlane
from jobs import aws, clock, instances
from jobs.dynamo_values import to_dynamo
from jobs.owners import OwnerLedger
from jobs.record import Job
from jobs.slots import LaunchClaims, SlotLedger
from jobs.states import JobStatus
from jobs.store import JobStore
from local_cloud.resources import create_tables
from services.reaper.settings import Settings
from tests.support.aws_env import ACCOUNT_ID, REGION, moto_in_process
from tests.support.fakes import METRICS_NAMESPACE, SERVICE_NAME, use_test_metrics
from tests.support.jobs import new_job

JOBS_TABLE = "test-jobs"
API_KEYS_TABLE = "test-api-keys"
LOG_GROUP = "/test/workers"
WORKER_ROLE_ID = "AROATESTWORKERROLE00"
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{JOBS_TABLE}/stream/2024-01-01T00:00:00.000"

ENVIRONMENT = {
    "JOBS_TABLE_NAME": JOBS_TABLE,
    "WORKER_LOG_GROUP": LOG_GROUP,
    "WORKER_ROLE_ID": WORKER_ROLE_ID,
    "MAX_CONCURRENT_JOBS": "3",
    "MAX_RUNNING_JOBS_PER_OWNER": "3",
    "PROJECT_TAG": "seren-test",
    "HEARTBEAT_INTERVAL_SECONDS": "30",
    "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    "POWERTOOLS_TRACE_DISABLED": "true",
}

_sequence = itertools.count(1)


@dataclass
class World:
    settings: Settings
    store: JobStore
    slots: SlotLedger
    claims: LaunchClaims
    ec2: Any
    subnet_ids: list[str]
    launch_template_id: str
    table: Any
    jobs_created: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self, **overrides: Any) -> ControlPlane:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return ControlPlane(settings, self.store, self.slots, self.claims, self.fleet, self.owners)

    @property
    def owners(self) -> OwnerLedger:
        return OwnerLedger(self.settings.jobs_table_name, self.table)

    @property
    def fleet(self) -> instances.Ec2Fleet:
        return instances.Ec2Fleet(self.settings.managed_by)

    # -- arranging state ------------------------------------------------------------

    def put_job(
        self, status: JobStatus = JobStatus.PENDING, *, age: timedelta = timedelta(0), **fields: Any
    ) -> Job:
        """Store a job in `status`, created `age` ago, with any other fields given."""
        with self._lock:
            self.jobs_created += 1
            serial = self.jobs_created
        created = clock.now() - age + timedelta(milliseconds=serial)  # distinct, ordered
        job = new_job(status, created=created, **fields)
        self.table.put_item(Item=to_dynamo(job.to_item()))
        return job

    def start_instance(self, job_id: str, attempt: int = 1, *, managed_by: str | None = None) -> str:
        """An instance of ours for a job attempt, as a launcher would have started it."""
        request = instances.LaunchRequest(
            job_id=job_id,
            attempt=attempt,
            project=self.settings.project_tag,
            launch_template_id=self.launch_template_id,
            launch_template_version="$Latest",
            instance_types=["t3.medium"],
            subnet_ids=self.subnet_ids,
            user_data="#!/bin/bash\n",
        )
        return instances.Ec2Fleet(managed_by or self.settings.managed_by).launch(request).instance_id

    # -- observing --------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        job = self.store.get(job_id, include_expired=True)
        assert job is not None
        return job

    def live_instances(self, job_id: str | None = None) -> list[instances.Instance]:
        ours = self.fleet.describe_ours()
        return [i for i in ours if job_id is None or i.job_id == job_id]

    def instance_state(self, instance_id: str) -> str:
        answer = self.ec2.describe_instances(InstanceIds=[instance_id])
        return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])

    def user_data(self, instance_id: str) -> str:
        import base64

        value = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return base64.b64decode(value["UserData"]["Value"]).decode()


@dataclass(frozen=True)
class Cloud:
    """What tests in one module share: starting moto's EC2 costs seconds, a table does not."""

    ec2: Any
    subnet_ids: list[str]
    launch_template_id: str


def build_cloud() -> Cloud:
    """Inside mock_aws, with ENVIRONMENT set."""
    aws.reset_clients()
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"] for n in (1, 2)]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="test-worker", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplate"]["LaunchTemplateId"]
    return Cloud(ec2=ec2, subnet_ids=subnets, launch_template_id=template)


def build_world(cloud: Cloud) -> World:
    """A fresh jobs table; its name is the deployment's `ManagedBy`, so instances of other
    tests in the module are not this world's."""
    suffix = uuid.uuid4().hex[:10]
    jobs_table = f"{JOBS_TABLE}-{suffix}"
    create_tables(
        boto3.client("dynamodb"), jobs_table=jobs_table, api_keys_table=f"{API_KEYS_TABLE}-{suffix}"
    )
    settings = Settings.from_environment(
        jobs_table_name=jobs_table,
        launch_template_id=cloud.launch_template_id,
        subnet_ids=",".join(cloud.subnet_ids),
        fallback_instance_types="m5.large",
        worker_capacity="on-demand",  # tests/launcher/test_spot.py asks for Spot
    )
    return World(
        settings=settings,
        store=JobStore(jobs_table),
        slots=SlotLedger(jobs_table),
        claims=LaunchClaims(jobs_table),
        ec2=cloud.ec2,
        subnet_ids=cloud.subnet_ids,
        launch_template_id=cloud.launch_template_id,
        table=aws.table(jobs_table),
    )


def _make_moto_dynamodb_requests_atomic(patch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request to an item atomically. In-process moto does not: a
    write changes the stored item in place, and Query (like every response) turns items
    into its answer outside any lock, so a thread could read an item half-updated by
    another (a new `active_status` next to the old `status`) and act on a state that never
    existed. One lock around each whole request, answer included, restores the atomicity
    the control plane relies on."""
    from functools import wraps

    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    @wraps(original)
    def one_request_at_a_time(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    patch.setattr(DynamoHandler, "call_action", one_request_at_a_time)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with pytest.MonkeyPatch.context() as patch:
        # botocore's retries stay on; only their waits are cut so the tests stay fast.
        patch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, ctx: 0)
        _make_moto_dynamodb_requests_atomic(patch)
        with moto_in_process(patch, **ENVIRONMENT):
            yield build_cloud()


@pytest.fixture
def world(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> World:
    made = build_world(cloud)
    monkeypatch.setenv("JOBS_TABLE_NAME", made.settings.jobs_table_name)
    monkeypatch.setenv("LAUNCH_TEMPLATE_ID", cloud.launch_template_id)
    monkeypatch.setenv("SUBNET_IDS", ",".join(cloud.subnet_ids))
    monkeypatch.setenv("FALLBACK_INSTANCE_TYPES", "m5.large")
    monkeypatch.setenv("WORKER_CAPACITY", "on-demand")
    use_test_metrics(monkeypatch)
    return made


# -- stream records ---------------------------------------------------------------------


def _image(item: dict[str, Any]) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in to_dynamo(item).items()}


def stream_record(event_name: str, *, new: Any = None, old: Any = None) -> dict[str, Any]:
    """A DynamoDB stream record as Lambda delivers it (NEW_AND_OLD_IMAGES); images are Jobs
    or raw items."""
    new_item = new.to_item() if isinstance(new, Job) else new
    old_item = old.to_item() if isinstance(old, Job) else old
    key = (new_item or old_item)["job_id"]
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": clock.epoch(clock.now()),
        "Keys": {"job_id": {"S": key}},
        "SequenceNumber": f"{next(_sequence):021d}",
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new_item is not None:
        body["NewImage"] = _image(new_item)
    if old_item is not None:
        body["OldImage"] = _image(old_item)
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": body,
        "eventSourceARN": STREAM_ARN,
    }


def inserted(job: Job) -> dict[str, Any]:
    return stream_record("INSERT", new=job)


def modified(old: Job, new: Job) -> dict[str, Any]:
    return stream_record("MODIFY", new=new, old=old)


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


@dataclass
class FakeLambdaContext:
    function_name: str = "launcher"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:launcher"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


# -- EC2 faults -------------------------------------------------------------------------


def _error_body(code: str) -> str:
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error>"
        f"</Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    )


# EC2 answers capacity shortages and internal errors as server errors.
STATUS_OF = {
    "RequestLimitExceeded": 503,
    "InternalError": 500,
    "InsufficientInstanceCapacity": 500,
    "UnauthorizedOperation": 403,
}


@contextmanager
def ec2_faults(plan: Callable[[dict[str, Any]], str | None]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Make moto answer RunInstances with the error code `plan(params)` names (None: run it).
    The error travels as an HTTP answer, so botocore's retries see it as they would from
    AWS. Yields the calls that reached EC2: (answer, params)."""
    from moto.ec2.responses.instances import InstanceResponse

    calls: list[tuple[str, dict[str, Any]]] = []
    original = InstanceResponse.run_instances

    def run_instances(self: Any) -> Any:
        params = {key: values[0] for key, values in self.querystring.items()}
        code = plan(params)
        calls.append((code or "ok", params))
        if code:
            status = STATUS_OF.get(code, 400)
            return status, {"status": status}, _error_body(code)
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InstanceResponse, "run_instances", run_instances)
        yield calls


def failing(*codes: str) -> Callable[[dict[str, Any]], str | None]:
    """A plan that answers the first calls with `codes`, in order, then lets moto answer."""
    queue = list(codes)
    lock = threading.Lock()

    def plan(_: dict[str, Any]) -> str | None:
        with lock:
            return queue.pop(0) if queue else None

    return plan


@contextmanager
def acting_after_call(world: World, after_call: int, act: Callable[[], object]) -> Iterator[None]:
    """`act` right after the `after_call`-th DynamoDB call made from here on (its own calls
    not counted), or after the block if fewer are made."""
    client = aws.table(world.settings.jobs_table_name).meta.client
    calls: list[int] = []

    def after(**_: Any) -> None:
        calls.append(1)
        if len(calls) == after_call:
            client.meta.events.unregister("after-call.dynamodb", after)
            act()

    client.meta.events.register("after-call.dynamodb", after)
    try:
        yield
    finally:
        client.meta.events.unregister("after-call.dynamodb", after)
    if len(calls) < after_call:
        act()


def ago(**delta: float) -> str:
    return clock.iso(clock.now() - timedelta(**delta))


def moment_ago(**delta: float) -> datetime:
    return clock.now() - timedelta(**delta)
