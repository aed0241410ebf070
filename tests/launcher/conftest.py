"""Fixtures of the launcher tests: a control-plane world on in-process moto."""

from control_plane import cloud, world

__all__ = ["cloud", "world"]
