"""`python -m local_cloud.moto_main`: moto's server, minus moto's own stream delivery.

When a DynamoDB stream has an event source mapping, moto sends each new record to the
mapped function itself, during the write, and then drops the stream's records (they count
as processed); it also fails the write when an item holds binary attributes, which it cannot
put into JSON. In the local cloud the stream poller is the mapping and reads the records
with GetRecords, so moto's delivery is switched off here. The configuration API
(`{"lambda": {"use_docker": false}}`, set by MotoServer) only stops moto from running
functions; it does not stop the delivery.

moto applies a conditional write, or a transaction, in steps (check, then write; a failed
transaction puts back a copy of the whole table taken before it), while the server answers
requests on threads: concurrent writes could both pass one condition, and a rollback could
undo another request's write. DynamoDB makes each of them atomic, so here one lock is held
across every write. The rollback's copy of a table also has a new stream shard, which the
stream poller's iterators would never see: the shard it had is put back, without the
records of the writes the rollback undid.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.awslambda.models import LambdaBackend
from moto.dynamodb.models import DynamoDBBackend
from moto.server import main


def _leave_records_on_the_stream(self: LambdaBackend, function_arn: str, items: Any, source: str) -> None:
    """Nothing delivered: the records stay for the local poller to read."""


LambdaBackend.send_dynamodb_items = _leave_records_on_the_stream  # type: ignore[method-assign,assignment]

_writing = threading.RLock()  # re-entrant: a transaction calls the single-item writes


def _atomic(name: str) -> None:
    original = getattr(DynamoDBBackend, name)

    def write(*args: Any, **kwargs: Any) -> Any:
        with _writing:
            return original(*args, **kwargs)

    setattr(DynamoDBBackend, name, write)


for _write in ("put_item", "update_item", "delete_item"):
    _atomic(_write)

_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_keeping_streams(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    with _writing:
        shards = {
            name: (table, table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        try:
            _transact_write_items(self, transact_items)
        finally:
            for name, (before, shard, length) in shards.items():
                table = self.tables.get(name)
                if table is not None and table is not before:  # rolled back to a copy
                    del shard.items[length:]
                    shard.table = table
                    table.stream_shard = shard


DynamoDBBackend.transact_write_items = _transact_keeping_streams  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
