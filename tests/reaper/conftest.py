"""Fixtures of the reaper tests: the same control-plane world as the launcher's."""

import sys
from pathlib import Path

# The world and its helpers live with the launcher tests; the reaper tests share them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "launcher"))

from control_plane import cloud, world

__all__ = ["cloud", "world"]
