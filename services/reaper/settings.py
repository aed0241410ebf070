"""The reaper's settings: the control plane's launch settings plus its thresholds."""

from __future__ import annotations

from control_plane.settings import RUNTIME_VARIABLES, SweepSettings

Settings = SweepSettings

__all__ = ["RUNTIME_VARIABLES", "Settings"]
