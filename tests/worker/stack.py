"""A local AWS for the worker tests: moto in server mode (the worker is a real subprocess,
as on an instance) behind a fault injector, a tiny IMDSv2 for the instance id, and helpers
to arrange a job the way the API and the launcher leave it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from control_plane.changes import Change, StreamChange, classify, filter_patterns
from control_plane.reports import relay
from jobs import aws, clock
from jobs.crypto import CredentialCipher, Credentials, instance_arn
from jobs.job_logs import JobLogGroups, job_log_group
from jobs.record import INSTANCE_CREDENTIALS_ATTRIBUTE, Job
from jobs.spec import JobFilter, JobOptions
from jobs.states import JobStatus
from jobs.store import JobStore
from jobs.urls import parse_url
from jobs.worker_identity import worker_user_id
from local_cloud.imds import MetadataServer
from local_cloud.resources import create_tables
from local_cloud.stream_poller import StreamPoller, pattern_matcher
from tests.support.aws_env import FAKE_AWS_ENVIRONMENT
from tests.support.jobs import new_job

REPO = Path(__file__).resolve().parents[2]
WORKER_SH = REPO / "worker" / "worker.sh"
JOBS_TABLE = "worker-test-jobs"
API_KEYS_TABLE = "worker-test-api-keys"
LOG_GROUP = "/seren-replicator/worker-test"
METRICS_NAMESPACE = "WorkerTest"
DYNAMODB_TARGET = "DynamoDB_20120810."
WORKER_ROLE_ID = "AROAWORKERTESTROLE001"


@dataclass
class Fault:
    """Answer matching DynamoDB calls with an error instead of passing them to moto."""

    operation: str
    body_contains: tuple[str, ...]
    body_lacks: tuple[str, ...] = ()
    status: int = 400
    error: str = "ThrottlingException"
    times: int | None = None  # None: for ever
    hits: int = 0

    def matches(self, operation: str, body: str) -> bool:
        if operation != self.operation or (self.times is not None and self.hits >= self.times):
            return False
        return all(s in body for s in self.body_contains) and not any(s in body for s in self.body_lacks)


@dataclass
class FaultyDynamo:
    """WSGI middleware in front of moto: the worker sees real HTTP errors, botocore retries them."""

    app: Callable[..., Any]
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(DYNAMODB_TARGET) and self.faults:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            operation, text = target[len(DYNAMODB_TARGET) :], body.decode("utf-8", "replace")
            with self.lock:
                fault = next((f for f in self.faults if f.matches(operation, text)), None)
                if fault is not None:
                    fault.hits += 1
            if fault is not None:
                answer = json.dumps(
                    {"__type": f"com.amazonaws.dynamodb.v20120810#{fault.error}", "message": "injected"}
                ).encode()
                reason = "Bad Request" if fault.status == 400 else "Internal Server Error"
                start_response(
                    f"{fault.status} {reason}",
                    [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(answer)))],
                )
                return [answer]
        return self.app(environ, start_response)


class MotoWithFaults:
    def __init__(self) -> None:
        self.app = FaultyDynamo(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MotoWithFaults:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


# The account moto and the local IMDS both answer with.
MOTO_ACCOUNT = "123456789012"


def metadata_server(instance_id: str) -> MetadataServer:
    """The local cloud's IMDSv2 for one instance, started."""
    return MetadataServer(
        instance_id=instance_id, region="us-east-1", instance_type="c5.large", availability_zone="us-east-1a"
    ).start()


@dataclass
class Cloud:
    endpoint: str
    moto: MotoWithFaults
    key_id: str
    image_id: str
    relay: StreamPoller

    @property
    def store(self) -> JobStore:
        return JobStore(JOBS_TABLE)

    def faults(self) -> list[Fault]:
        return self.moto.app.faults

    def instance_state(self, instance_id: str) -> str:
        answer = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])

    def start_instance(self) -> str:
        answer = aws.client("ec2").run_instances(ImageId=self.image_id, MinCount=1, MaxCount=1)
        return str(answer["Instances"][0]["InstanceId"])

    def log_lines(self, job_id: str) -> list[str]:
        answer = aws.client("logs").get_log_events(
            logGroupName=job_log_group(LOG_GROUP, job_id), logStreamName=job_id, startFromHead=True
        )
        return [event["message"] for event in answer["events"]]

    def arrange_job(
        self,
        source_url: str,
        target_url: str,
        *,
        command: str = "init",
        job_filter: JobFilter | None = None,
        options: JobOptions | None = None,
    ) -> tuple[str, str]:
        """A job as the API wrote it and the launcher moved it to provisioning on a new instance."""
        job = new_job(
            owner="owner-test",
            schema_version="1.1",
            command=command,
            filter=job_filter or JobFilter(),
            options=options or JobOptions(),
            source=parse_url(source_url).redacted,
            target=parse_url(target_url).redacted,
        )
        job_id = job.job_id
        ciphertext = CredentialCipher(self.key_id).encrypt(job_id, Credentials(source_url, target_url))
        assert self.store.create(job, ciphertext, owner_cap=1000).created
        instance_id = self.start_instance()
        # As the launcher does: the credentials re-encrypted for this instance alone.
        bound = CredentialCipher(self.key_id).bind_to_instance(
            job_id, ciphertext, instance_arn("us-east-1", MOTO_ACCOUNT, instance_id)
        )
        # As the launcher does before the write below: the job's own log group, for this instance.
        JobLogGroups(
            LOG_GROUP, arn_prefix=f"arn:aws:logs:us-east-1:{MOTO_ACCOUNT}:log-group:", retention_days=1
        ).prepare(job_id, worker_user_id("AROAWORKERROLETEST", instance_id))
        moved = self.store.transition(
            job_id,
            [JobStatus.PENDING],
            JobStatus.PROVISIONING,
            set_fields={
                "instance_id": instance_id,
                "attempt": 1,
                "launched_at": clock.now_iso(),
                INSTANCE_CREDENTIALS_ATTRIBUTE: bound,
            },
        )
        assert moved.ok
        return job_id, instance_id


def start_cloud() -> Cloud:
    moto = MotoWithFaults().start()
    os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
    aws.reset_clients()
    create_tables(aws.client("dynamodb"), jobs_table=JOBS_TABLE, api_keys_table=API_KEYS_TABLE)
    key_id = aws.client("kms").create_key()["KeyMetadata"]["KeyId"]
    image_id = aws.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reports = relay_reports()
    reports.start()
    return Cloud(endpoint=moto.endpoint, moto=moto, key_id=key_id, image_id=image_id, relay=reports)


def relay_reports() -> StreamPoller:
    """The launcher's part the worker needs: its reports copied into the job item, read from
    the table's stream as the launcher's event source mapping reads it."""
    sqs = aws.client("sqs")
    dlq_url = sqs.create_queue(QueueName="worker-test-relay-dlq")["QueueUrl"]
    table = aws.client("dynamodb").describe_table(TableName=JOBS_TABLE)["Table"]

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        for record in event["Records"]:
            change = StreamChange.from_record(record)
            if classify(change) is Change.WORKER_REPORT:
                relay(JobStore(JOBS_TABLE), WORKER_ROLE_ID, change.job_id, change.new_image or {})
        return {"batchItemFailures": []}

    return StreamPoller(
        aws.client("dynamodbstreams"),
        sqs,
        stream_arn=table["LatestStreamArn"],
        invoke=invoke,
        matches=pattern_matcher(filter_patterns()),
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:worker-test-relay",
        dlq_url=dlq_url,
        idle_wait_seconds=0.05,
    )


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs: an exited child, or one not yet reaped, has no environment left."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def cmdline(pid: int) -> str:
    return _proc_text(pid, "cmdline")


def environ(pid: int) -> str:
    """The process's initial environment block, as /proc keeps it for its whole life."""
    return _proc_text(pid, "environ")


def _proc_text(pid: int, name: str) -> str:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class WorkerRun:
    """`worker.sh JOB_ID` as user-data runs it, with this instance's IMDS."""

    process: subprocess.Popen[str]
    imds: MetadataServer
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.imds.stop()

    def output(self) -> str:
        return self.log_path.read_text()

    def engine_pids(self) -> list[int]:
        return [pid for pid in descendants(self.pid) if "worker.engines.pg" in cmdline(pid)]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)


def worker_env(cloud: Cloud, imds: MetadataServer, local_log_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "WORKER_PYTHON": sys.executable,
        "AWS_ENDPOINT_URL": cloud.endpoint,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
        **FAKE_AWS_ENVIRONMENT,
        "JOBS_TABLE_NAME": JOBS_TABLE,
        "WORKER_LOG_GROUP": LOG_GROUP,
        "WORKER_ROLE_ID": WORKER_ROLE_ID,
        "METRICS_NAMESPACE": METRICS_NAMESPACE,
        "ENGINE": "pg",
        "ALLOW_LOOPBACK_HOSTS": "true",
        "HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "PROGRESS_MIN_INTERVAL_SECONDS": "0.1",
        "ITEM_WRITES_PER_HOUR": "100000",
        "ENGINE_STOP_GRACE_SECONDS": "3",
        "LOG_FLUSH_INTERVAL_SECONDS": "0.3",
        "LOCAL_LOG_DIR": str(local_log_dir),
        "HEARTBEAT_WRITE_MAX_ATTEMPTS": "2",
        "STATUS_WRITE_MAX_ATTEMPTS": "3",
        "POWERTOOLS_SERVICE_NAME": "replication-worker",
    }
    env.update(overrides)
    return env


def start_worker(cloud: Cloud, job_id: str, instance_id: str, tmp: Path, **overrides: str) -> WorkerRun:
    imds = metadata_server(instance_id)
    log_path = tmp / f"worker-{job_id}.out"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(WORKER_SH), job_id],
            env=worker_env(cloud, imds, tmp / "local-logs", **overrides),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp,
        )
    return WorkerRun(process=process, imds=imds, log_path=log_path)


def watch(store: JobStore, job_id: str, until: Callable[[Job], bool], timeout: float = 60) -> Iterator[Job]:
    """The job as polled every 50 ms until `until` holds (or the timeout fails the test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        assert job is not None
        yield job
        if until(job):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the expected state in {timeout} s")
