"""Fixtures of the reaper tests: the same control-plane world as the launcher's."""

from tests.support.world import cloud, world

__all__ = ["cloud", "world"]
