"""The stream records the launcher runs on, defined once.

`FILTER_PATTERNS` are the Lambda event-source-mapping filter patterns (Terraform's
`filter_criteria { filter { pattern = ... } }`, boto3's `FilterCriteria`); the local
cloud's stream poller applies the same patterns (`local_cloud.event_filter`), so the two
cannot drift. Items without a `status` (the slot ledger, launch claims) never match.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.states import ACTIVE, TERMINAL, JobStatus

_ACTIVE = sorted(s.value for s in ACTIVE)
_TERMINAL = sorted(s.value for s in TERMINAL)

# A new job to admit.
NEW_PENDING_JOB: dict[str, Any] = {
    "eventName": ["INSERT"],
    "dynamodb": {"NewImage": {"status": {"S": [JobStatus.PENDING.value]}}},
}
# A job that has just ended: its slot frees. The old image must be active, so later writes
# to an ended job (credential wipes, repeated terminal writes) do not match. This includes
# the cancel of a `provisioning` job, whose instance the launcher terminates.
JOB_JUST_ENDED: dict[str, Any] = {
    "eventName": ["MODIFY"],
    "dynamodb": {
        "OldImage": {"status": {"S": _ACTIVE}},
        "NewImage": {"status": {"S": _TERMINAL}},
    },
}

PATTERNS: tuple[dict[str, Any], ...] = (NEW_PENDING_JOB, JOB_JUST_ENDED)
FILTER_PATTERNS: tuple[str, ...] = tuple(json.dumps(p, sort_keys=True) for p in PATTERNS)


def filter_criteria() -> dict[str, Any]:
    """The `FilterCriteria` argument of CreateEventSourceMapping."""
    return {"Filters": [{"Pattern": pattern} for pattern in FILTER_PATTERNS]}

