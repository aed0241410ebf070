"""`python -m worker.terminate`: terminate this instance (its id from IMDSv2).

worker.sh runs it after the worker, whatever the worker's exit status, so an instance is
terminated even when the worker itself crashed. A process of its own also keeps the EC2
client (a large service model) out of the worker's memory. Exit 0 once terminated.
"""

from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError

from jobs import instances
from jobs.observability import worker_logger
from worker import metadata

logger = worker_logger()

ATTEMPTS = 5
EXIT_NOT_TERMINATED = 3


def terminate_self(instance_id: str, attempts: int = ATTEMPTS) -> bool:
    """botocore retries each call; this retries the whole call a few times more."""
    for attempt in range(attempts):
        if attempt:
            time.sleep(2 ** (attempt - 1))
        try:
            instances.terminate([instance_id])
            logger.info("instance terminated", extra={"instance_id": instance_id})
            return True
        except (BotoCoreError, ClientError) as exc:
            logger.warning("terminate failed", extra={"attempt": attempt + 1, "reason": str(exc)})
    return False


def main() -> int:
    try:
        instance_id = metadata.instance_id()
    except metadata.MetadataUnavailable:
        logger.exception("no instance id: cannot terminate this instance")
        return EXIT_NOT_TERMINATED
    return 0 if terminate_self(instance_id) else EXIT_NOT_TERMINATED


if __name__ == "__main__":
    raise SystemExit(main())
