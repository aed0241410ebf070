"""The reaper's settings: the control plane's launch settings (it launches too) plus its
thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator

from control_plane.settings import RUNTIME_VARIABLES, LaunchSettings

__all__ = ["RUNTIME_VARIABLES", "Settings"]


class Settings(LaunchSettings):
    # A `running` job whose worker wrote nothing for this long has lost its worker.
    heartbeat_timeout_seconds: int = Field(default=300, ge=2)
    # A `provisioning` job whose worker has not started this long after the launch.
    provisioning_grace_seconds: int = Field(default=900, ge=60)
    # Allowed beyond the job's own `job_timeout_seconds` before it is timed out.
    deadline_grace_seconds: int = Field(default=600, ge=0)
    # A `cancelling` job whose worker has not stopped this long after the request.
    cancel_grace_seconds: int = Field(default=300, ge=1)
    # A `pending` job this old lost its stream record (or its launcher).
    pending_grace_seconds: int = Field(default=180, ge=1)
    # A `pending`/`queued` job holding a slot this long after its last write is not being launched.
    slot_hold_grace_seconds: int = Field(default=900, ge=60)
    # An instance younger than this may belong to a launch still in flight.
    orphan_grace_seconds: int = Field(default=600, ge=60)

    @model_validator(mode="after")
    def _heartbeat_timeout_spans_heartbeats(self) -> Settings:
        # One late heartbeat must not get a healthy worker reaped.
        if self.heartbeat_timeout_seconds < 2 * self.heartbeat_interval_seconds:
            raise ValueError("HEARTBEAT_TIMEOUT_SECONDS must be at least twice HEARTBEAT_INTERVAL_SECONDS")
        return self
