"""Who a worker is to AWS. EC2 names an instance role's session after the instance, so
every request a worker makes carries the caller id (`aws:userid`, GetCallerIdentity's
`UserId`) `<role id>:<instance id>`, and IAM can compare a name with `${aws:userid}`.

The service names what a worker alone may write by that id: its report item (whose key
the worker policy's `dynamodb:LeadingKeys` must equal) and its job's log group (tagged
with it). A worker cannot take another instance's id; the role id ties it to the role.
"""

from __future__ import annotations

import re

# An IAM role's unique id (AROA...), then an EC2 instance id.
_WORKER_USER_ID = re.compile(r"^(AROA[A-Z0-9]{4,128}):(i-[0-9a-f]{8,17})$")


def worker_user_id(role_id: str, instance_id: str) -> str:
    return f"{role_id}:{instance_id}"


def instance_of(user_id: str, role_id: str) -> str | None:
    """The instance a worker's caller id names, or None when it is not one of `role_id`'s."""
    match = _WORKER_USER_ID.match(user_id)
    if match is None or match.group(1) != role_id:
        return None
    return match.group(2)
