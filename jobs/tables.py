"""The tables' shapes, declared once: the local cloud creates them from here and tests
check that Terraform declares the same keys, indexes, stream and TTL."""

from __future__ import annotations

from typing import Any

from jobs.record import ACTIVE_INDEX_KEY, OWNER_CREATED_ATTRIBUTE, TTL_ATTRIBUTE

ACTIVE_JOBS_INDEX = "active-jobs"
OWNER_JOBS_INDEX = "owner-jobs"
STATUS_JOBS_INDEX = "status-jobs"
STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
# The worker-slot ledger lives in the jobs table so that it can share transactions with jobs.
SLOTS_ITEM_ID = "control#worker-slots"

JOBS_TABLE: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "job_id", "AttributeType": "S"},
        {"AttributeName": ACTIVE_INDEX_KEY, "AttributeType": "S"},
        {"AttributeName": "owner", "AttributeType": "S"},
        {"AttributeName": "created_at", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
        {"AttributeName": OWNER_CREATED_ATTRIBUTE, "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            # Sparse: only unfinished jobs carry active_status, so the reaper's reads stay small.
            "IndexName": ACTIVE_JOBS_INDEX,
            "KeySchema": [
                {"AttributeName": ACTIVE_INDEX_KEY, "KeyType": "HASH"},
                {"AttributeName": "created_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": OWNER_JOBS_INDEX,
            "KeySchema": [
                {"AttributeName": "owner", "KeyType": "HASH"},
                {"AttributeName": "created_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            # An owner's jobs in one status, as one key range: a status filter is one query
            # whatever the owner's history. Partitioned by status: a job changes status a few
            # times in its life, far below what one index partition takes.
            "IndexName": STATUS_JOBS_INDEX,
            "KeySchema": [
                {"AttributeName": "status", "KeyType": "HASH"},
                {"AttributeName": OWNER_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
}
JOBS_TTL_ATTRIBUTE = TTL_ATTRIBUTE

API_KEYS_TABLE: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "key_hash", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}
