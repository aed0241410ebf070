"""Fixtures of the launcher tests: a control-plane world on in-process moto."""

from tests.support.world import cloud, world

__all__ = ["cloud", "world"]
