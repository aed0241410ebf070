"""The worker's start: the user-data script each instance runs, holding the job id and the
worker's non-secret settings only (user-data is readable by anyone who can describe the
instance). The worker image installs its entry point at `WORKER_ENTRY_POINT`."""

from __future__ import annotations

import shlex

from control_plane.settings import LaunchSettings

WORKER_ENTRY_POINT = "/opt/seren-replicator/worker.sh"


def worker_environment(settings: LaunchSettings) -> dict[str, str]:
    """What the worker needs to find its job; never a secret."""
    return {
        "JOBS_TABLE_NAME": settings.jobs_table_name,
        "AWS_REGION": settings.aws_region,
        "AWS_DEFAULT_REGION": settings.aws_region,
        "WORKER_LOG_GROUP": settings.worker_log_group,
        "WORKER_ROLE_ID": settings.worker_role_id,
        "HEARTBEAT_INTERVAL_SECONDS": str(settings.heartbeat_interval_seconds),
        "MAX_JOB_RUNTIME_SECONDS": str(settings.max_job_runtime_seconds),
        "ALLOWED_TARGET_SUFFIXES": settings.allowed_target_suffixes,
        "ALLOW_LOOPBACK_HOSTS": str(settings.allow_loopback_hosts).lower(),
        "ALLOW_PRIVATE_HOSTS": str(settings.allow_private_hosts).lower(),
        "METRICS_NAMESPACE": settings.metrics_namespace,
        "SHUTDOWN_IF_NOT_TERMINATED": str(settings.worker_shutdown_if_not_terminated).lower(),
        "SEREN_CONSOLE_URL": settings.seren_console_url,
        "ENGINE": settings.worker_engine,
    }


def user_data(settings: LaunchSettings, job_id: str) -> str:
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in worker_environment(settings).items())
    return (
        "#!/bin/bash\n"
        f"export {exports}\n"
        f'exec "${{WORKER_SCRIPT:-{WORKER_ENTRY_POINT}}}" {shlex.quote(job_id)}\n'
    )
