"""The event source mapping: reads the jobs table's stream and calls the launcher.

What Lambda's DynamoDB-stream poller does, on moto's dynamodbstreams API: every shard is
read in order (a child shard only after its parent is done), records are filtered with the
mapping's filter criteria before any invocation, batches go to the function, and a
partial batch response (`batchItemFailures`) makes the batch retry from the lowest failed
sequence number; after the retry limit the failed part goes to the on-failure destination
(an SQS queue) as batch metadata, and reading moves on. Records older than the maximum
record age go there unprocessed. `StreamPoller.for_mapping` takes every setting from the
deployed mapping (local_cloud/wiring.py).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from local_cloud.wiring import StreamWiring

logger = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]
Matches = Callable[[dict[str, Any]], bool]


@dataclass
class ShardState:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    last_sequence: str | None = None
    closed: bool = False  # the shard has no more records (its iterator ran out)
    buffer: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    # Halved on each function error (bisect on error); None: the configured batch size.
    batch_limit: int | None = None
    # When the buffer last went from empty to holding records (the batching window's start).
    gathering_since: float = 0.0


@dataclass
class PollerStats:
    records_read: int = 0
    records_filtered_out: int = 0
    batches: int = 0
    retries: int = 0
    bisections: int = 0
    records_to_dlq: int = 0


def pattern_matcher(patterns: Sequence[str]) -> Matches:
    """A record passes when any filter pattern matches it (no patterns: every record), with
    EventBridge's pattern rules, which Lambda's filter criteria follow."""
    compiled = [EventPattern.load(pattern) for pattern in patterns]
    if not compiled:
        return lambda record: True
    return lambda record: any(pattern.matches_event(record) for pattern in compiled)  # type: ignore[arg-type]


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it: epoch times, base64 binaries, the stream ARN."""
    converted = _json_ready(record)
    converted["eventSourceARN"] = stream_arn
    return converted


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_json_ready(v) for v in value]
    return value


def failed_from(batch: list[dict[str, Any]], response: Any) -> int | None:
    """Index of the first record to retry, None when the whole batch succeeded.

    As Lambda reads ReportBatchItemFailures: a null or unknown identifier fails the whole batch.
    """
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return None
    positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0
        indexes.append(positions[identifier])
    return min(indexes)


class StreamPoller:
    def __init__(
        self,
        streams: Any,
        sqs: Any,
        *,
        stream_arn: str,
        invoke: Invoke,
        matches: Matches,
        function_arn: str,
        dlq_url: str,
        batch_size: int = 10,
        maximum_retry_attempts: int = 3,
        bisect_batch_on_function_error: bool = True,
        idle_wait_seconds: float = 0.5,
        retry_delay_seconds: float = 0.2,
        starting_position: str = "TRIM_HORIZON",
        maximum_record_age_seconds: int = -1,
        report_batch_item_failures: bool = True,
        batching_window_seconds: float = 0.0,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self._streams = streams
        self._sqs = sqs
        self.stream_arn = stream_arn
        self._invoke = invoke
        self._matches = matches
        self._function_arn = function_arn
        self._dlq_url = dlq_url
        self._batch_size = batch_size
        self._max_retries = maximum_retry_attempts
        self._bisect = bisect_batch_on_function_error
        self._idle_wait = idle_wait_seconds
        self._retry_delay = retry_delay_seconds
        self._starting_position = starting_position
        self._maximum_record_age = maximum_record_age_seconds
        self._report_batch_item_failures = report_batch_item_failures
        self._batching_window = batching_window_seconds
        self._next_due: float | None = None  # a gathering batch's end of window
        self._on_batch = on_batch
        self._shards: dict[str, ShardState] = {}
        self._shards_listed_at = 0.0
        self.stats = PollerStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)

    @classmethod
    def for_mapping(
        cls,
        streams: Any,
        sqs: Any,
        mapping: StreamWiring,
        *,
        invoke: Invoke,
        idle_wait_seconds: float = 0.5,
        on_batch: Callable[[], None] | None = None,
    ) -> StreamPoller:
        """A poller with the deployed mapping's filters and delivery settings."""
        if not mapping.on_failure_arn.startswith("arn:aws:sqs:"):
            raise ValueError(f"the local poller sends failures to SQS only, not {mapping.on_failure_arn!r}")
        queue_name = mapping.on_failure_arn.rsplit(":", 1)[1]
        return cls(
            streams,
            sqs,
            stream_arn=mapping.stream_arn,
            invoke=invoke,
            matches=pattern_matcher(mapping.filter_patterns),
            function_arn=mapping.function.arn,
            dlq_url=sqs.get_queue_url(QueueName=queue_name)["QueueUrl"],
            batch_size=mapping.batch_size,
            maximum_retry_attempts=mapping.maximum_retry_attempts,
            bisect_batch_on_function_error=mapping.bisect_on_error,
            idle_wait_seconds=idle_wait_seconds,
            starting_position=mapping.starting_position,
            maximum_record_age_seconds=mapping.maximum_record_age_seconds,
            report_batch_item_failures=mapping.report_batch_item_failures,
            batching_window_seconds=mapping.batching_window_seconds,
            on_batch=on_batch,
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.poll_once()
            except Exception:  # moto busy or a transient error: the next round starts over
                logger.exception("stream poll failed")
                busy = False
            if not busy:
                wait = self._idle_wait
                if self._next_due is not None:
                    wait = max(0.0, min(wait, self._next_due - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()

    def poll_once(self) -> bool:
        """One round over the shards; True when it read or delivered anything."""
        self._refresh_shards()
        busy = False
        self._next_due = None
        for shard in list(self._shards.values()):
            if shard.closed and not shard.buffer:
                continue
            parent = self._shards.get(shard.parent_id or "")
            if parent is not None and not (parent.closed and not parent.buffer):
                continue  # records of a key stay in order: the parent shard goes first
            if (not shard.buffer and not shard.closed) or self._gathering(shard):
                busy |= self._read(shard)
            if shard.buffer and self._window_closed(shard):
                self._deliver(shard)
                busy = True
        return busy

    def _gathering(self, shard: ShardState) -> bool:
        """A first attempt at a partial batch inside an open window reads on to fill it."""
        return (
            self._batching_window > 0
            and not shard.closed
            and not shard.attempts
            and not shard.batch_limit
            and len(shard.buffer) < self._batch_size
        )

    def _window_closed(self, shard: ShardState) -> bool:
        """As the mapping's batching window: deliver a full batch at once, a partial one when
        the window since its first record has passed (or the shard ended, or a retry runs)."""
        if self._batching_window <= 0 or shard.closed or shard.attempts or shard.batch_limit:
            return True
        if len(shard.buffer) >= self._batch_size:
            return True
        due = shard.gathering_since + self._batching_window
        if time.monotonic() >= due:
            return True
        self._next_due = due if self._next_due is None else min(self._next_due, due)
        return False

    def _refresh_shards(self) -> None:
        now = time.monotonic()
        unread = [s for s in self._shards.values() if not s.closed]
        if unread and now - self._shards_listed_at < 30:
            return
        self._shards_listed_at = now
        first_listing = not self._shards
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self._shards:
                    continue
                state = ShardState(shard_id=shard_id, parent_id=shard.get("ParentShardId"))
                position = self._starting_position if first_listing else "TRIM_HORIZON"
                state.iterator = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
                )["ShardIterator"]
                self._shards[shard_id] = state
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            kwargs["ExclusiveStartShardId"] = last

    def _read(self, shard: ShardState) -> bool:
        try:
            answer = self._streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            shard.iterator = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn,
                ShardId=shard.shard_id,
                **(
                    {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_sequence}
                    if shard.last_sequence
                    else {"ShardIteratorType": "TRIM_HORIZON"}
                ),
            )["ShardIterator"]
            return True
        shard.iterator = answer.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True
        records = answer.get("Records", [])
        if not records:
            return False
        shard.last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
        self.stats.records_read += len(records)
        if not shard.buffer:
            shard.gathering_since = time.monotonic()
        for record in records:
            converted = lambda_record(record, self.stream_arn)
            if self._too_old(converted):
                self._send_to_dlq(shard, [converted], condition="RecordAgeExceeded")
            elif self._matches(converted):
                shard.buffer.append(converted)
            else:
                self.stats.records_filtered_out += 1
        return True

    def _too_old(self, record: dict[str, Any]) -> bool:
        if self._maximum_record_age < 0:
            return False
        created = record["dynamodb"].get("ApproximateCreationDateTime", time.time())
        return bool(time.time() - created > self._maximum_record_age)

    def _deliver(self, shard: ShardState) -> None:
        batch = shard.buffer[: shard.batch_limit or self._batch_size]
        self.stats.batches += 1
        function_error = False
        try:
            response = self._invoke({"Records": batch})
            # Without ReportBatchItemFailures, Lambda ignores what the function answers.
            first_failed = failed_from(batch, response) if self._report_batch_item_failures else None
        except Exception:  # a function error: the whole batch is retried
            function_error = True
            first_failed = 0
        finally:
            if self._on_batch is not None:
                self._on_batch()
        if first_failed is None:
            del shard.buffer[: len(batch)]
            shard.attempts = 0
            shard.batch_limit = None
            return
        if function_error and self._bisect and len(batch) > 1:
            # As Lambda's BisectBatchOnFunctionError: retry each half; a split is not a retry.
            shard.batch_limit = len(batch) // 2
            self.stats.bisections += 1
            return
        # Records before the first failure are done; the retry starts at the failure.
        del shard.buffer[:first_failed]
        failed = batch[first_failed:]
        shard.attempts += 1
        if shard.attempts <= self._max_retries:
            self.stats.retries += 1
            self._stopping.wait(self._retry_delay * shard.attempts)
            return
        self._send_to_dlq(shard, failed)
        del shard.buffer[: len(failed)]
        shard.attempts = 0
        shard.batch_limit = None

    def _send_to_dlq(
        self, shard: ShardState, failed: list[dict[str, Any]], condition: str = "RetryAttemptsExhausted"
    ) -> None:
        """The on-failure destination gets the batch's coordinates, as Lambda sends them."""
        arrivals = [r["dynamodb"].get("ApproximateCreationDateTime", 0) for r in failed]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": shard.attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": failed[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": failed[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(min(arrivals)),
                "approximateArrivalOfLastRecord": _iso(max(arrivals)),
                "batchSize": len(failed),
                "streamArn": self.stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=json.dumps(message))
        self.stats.records_to_dlq += len(failed)
        logger.warning("%d stream records sent to the DLQ after %d attempts", len(failed), shard.attempts)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
