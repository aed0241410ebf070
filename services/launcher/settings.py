"""The launcher's settings: the control plane's launch settings."""

from __future__ import annotations

from control_plane.settings import RUNTIME_VARIABLES, LaunchSettings

Settings = LaunchSettings

__all__ = ["RUNTIME_VARIABLES", "Settings"]
