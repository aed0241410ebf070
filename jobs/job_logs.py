"""Data access for CloudWatch Logs: a job's worker logs, in a log group of its own.

Each job has its own log group, `<worker log group>/<job id>` (stream name = job id), so
that IAM can confine a worker to its own job's logs: the launcher creates the group and
tags it with the caller id of the instance it started for the job (`WorkerUserId`,
jobs.worker_identity), and the worker role may write only into a group whose tag equals
its own `${aws:userid}`. A relaunch re-tags the group: a lost instance can no longer write.

The names are always derived from the job id, never read from the job's item: a worker
may write its item, and must not be able to point a client at another job's logs.

The worker writes through `LogWriter` (batched PutLogEvents, every line redacted); the
API reads the last lines with `read_lines`, redacted again because a stream may hold
lines written by anything on the instance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from jobs import aws
from jobs.dynamo import error_code
from jobs.redact import redact

logger = logging.getLogger(__name__)


# The tag naming the one caller that may write a job's log group (the worker policy
# compares aws:ResourceTag/WorkerUserId with ${aws:userid}).
WRITER_TAG = "WorkerUserId"


def job_log_group(worker_log_group: str, job_id: str) -> str:
    """The job's own log group: under the workers' group name (whose own streams hold the
    instances' boot logs), so one ARN pattern names every job's group and nothing else."""
    return f"{worker_log_group}/{job_id}"


def console_log_url(group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream (the console double-encodes names, '%' as '$')."""

    def encode(name: str) -> str:
        return quote(quote(name, safe=""), safe="").replace("%", "$")

    where = aws.region()
    return (
        f"https://{where}.console.aws.amazon.com/cloudwatch/home?region={where}"
        f"#logsV2:log-groups/log-group/{encode(group)}/log-events/{encode(stream)}"
    )


MAX_READ_LINES = 1000
# PutLogEvents limits: 10,000 events and 1,048,576 bytes per call, counting 26 bytes of
# overhead per event; one event at most 256 KiB.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_LINE_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES


def read_lines(group: str, stream: str, limit: int = 100, *, client: Any | None = None) -> list[str]:
    """The stream's last `limit` lines, oldest first (newest last), redacted.

    A stream that does not exist (yet) has no lines.
    """
    logs = client if client is not None else aws.client("logs")
    limit = max(1, min(limit, MAX_READ_LINES))
    try:
        answer = logs.get_log_events(
            logGroupName=group, logStreamName=stream, limit=limit, startFromHead=False
        )
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return [redact(event["message"].rstrip("\n")) for event in answer.get("events", [])]


class LogWriter:
    """Buffers lines and sends them in PutLogEvents batches.

    `secrets` (the decrypted URLs and passwords) are removed from every line, on top of
    the generic URL and password redaction. The stream is created on the first send.
    A send that fails after botocore's retries is reported on the module logger and the
    batch is dropped: losing log lines must never fail the job itself.
    Safe to call from several threads (an output reader and a heartbeat, say).
    """

    def __init__(
        self,
        group: str,
        stream: str,
        *,
        secrets: Iterable[str] = (),
        flush_interval_seconds: float = 5.0,
        client: Any | None = None,
    ) -> None:
        self.group = group
        self.stream = stream
        self._secrets = tuple(secrets)
        self._flush_interval = flush_interval_seconds
        self._logs = client if client is not None else aws.client("logs")
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._bytes = 0
        self._last_flush = time.monotonic()
        self._stream_ready = False

    def write(self, line: str) -> None:
        message = redact(line.rstrip("\n"), self._secrets)
        encoded = message.encode("utf-8", errors="replace")
        if len(encoded) > MAX_LINE_BYTES:
            message = encoded[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")
            encoded = message.encode()
        size = len(encoded) + EVENT_OVERHEAD_BYTES
        with self._lock:
            if len(self._events) >= MAX_BATCH_EVENTS or self._bytes + size > MAX_BATCH_BYTES:
                self._send_locked()
            timestamp = int(time.time() * 1000)
            if self._events:  # PutLogEvents wants the events of one batch in time order
                timestamp = max(timestamp, self._events[-1]["timestamp"])
            self._events.append({"timestamp": timestamp, "message": message or " "})
            self._bytes += size
            due = time.monotonic() - self._last_flush >= self._flush_interval
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._send_locked()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._events:
            return
        events, self._events, self._bytes = self._events, [], 0
        try:
            self._ensure_stream()
            try:
                self._put(events)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._stream_ready = False  # deleted under us: create it again, once
                self._ensure_stream()
                self._put(events)
        except ClientError as exc:
            logger.warning(
                "dropped %d log lines for stream %s: %s", len(events), self.stream, error_code(exc) or "error"
            )

    def _put(self, events: list[dict[str, Any]]) -> None:
        self._logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)

    def _ensure_stream(self) -> None:
        if self._stream_ready:
            return
        try:
            self._logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
        self._stream_ready = True


class JobLogGroups:
    """The launcher's and reaper's side: a job's log group, made ready for the instance that
    runs its attempt before that instance can start the job, and deleted with the job.

    The group is created with the retention and data key the workers' group has (a job's
    group is never created by anything else, so those are set here or nowhere).
    """

    def __init__(
        self,
        worker_log_group: str,
        *,
        arn_prefix: str,
        retention_days: int,
        kms_key_id: str = "",
        client: Any | None = None,
    ) -> None:
        self._prefix = worker_log_group
        self._arn_prefix = arn_prefix  # arn:<partition>:logs:<region>:<account>:log-group:
        self._retention_days = retention_days
        self._kms_key_id = kms_key_id
        self._logs = client if client is not None else aws.client("logs")

    def prepare(self, job_id: str, writer_user_id: str) -> None:
        """Make the job's group exist, writable by `writer_user_id` alone from now on."""
        group = job_log_group(self._prefix, job_id)
        tags = {WRITER_TAG: writer_user_id}
        create: dict[str, Any] = {"logGroupName": group, "tags": tags}
        if self._kms_key_id:
            create["kmsKeyId"] = self._kms_key_id
        try:
            self._logs.create_log_group(**create)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
            # An earlier attempt's group (or a retried launch): its tag moves to this instance.
            self._logs.tag_resource(resourceArn=self._arn_prefix + group, tags=tags)
        self._logs.put_retention_policy(logGroupName=group, retentionInDays=self._retention_days)

    def delete(self, job_id: str) -> None:
        try:
            self._logs.delete_log_group(logGroupName=job_log_group(self._prefix, job_id))
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
