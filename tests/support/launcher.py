"""Calling the launcher as Lambda would: one handler invocation per batch, or, for several
launchers at once, one batch processor and launch context per launcher."""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from control_plane.context import ControlPlane
from services.launcher import handler
from tests.support.world import FakeLambdaContext, World


def invoke(event: dict[str, Any]) -> list[str]:
    """The launcher Lambda on one batch; returns the sequence numbers reported failed."""
    handler.control_plane.cache_clear()  # settings come from this test's environment
    try:
        answer = handler.lambda_handler(event, FakeLambdaContext())
    except BatchProcessingError:
        # Every record failed: the invocation fails and Lambda retries the whole batch.
        return [record["dynamodb"]["SequenceNumber"] for record in event["Records"]]
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def invoke_as(ctx: ControlPlane, event: dict[str, Any]) -> list[str]:
    """Another launcher (its own container): own processor, own claim holder."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    answer = process_partial_response(
        event=event,
        record_handler=partial(handler.handle_record, cp=ctx),
        processor=processor,
        context=FakeLambdaContext(),  # type: ignore[arg-type]
    )
    return [str(failure["itemIdentifier"]) for failure in answer["batchItemFailures"]]


def new_launcher(world: World) -> ControlPlane:
    return world.context()
