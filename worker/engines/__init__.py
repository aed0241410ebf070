"""Replication engines: what the worker runs for a job, and how to read its output.

engine = select_engine(settings.engine)          # "pg" | "seren-replicator"
invocation = engine.invocation(EngineJob(...))   # argv, extra env, secrets to redact
parser = engine.parser(invocation)
for line in output: parsed = parser.parse_line(line)   # redacted log, progress, is_error
on failure: summarize_failure(parsed_lines, invocation.secrets), engine.exit_message(code)
"""

from __future__ import annotations

from worker.engines.base import (
    Engine,
    EngineJob,
    Invocation,
    OutputParser,
    ParsedLine,
    summarize_failure,
)
from worker.engines.pg import PgEngine
from worker.engines.replicator import ReplicatorEngine

ENGINE_NAMES = ("pg", "seren-replicator")


def select_engine(name: str = "pg") -> Engine:
    """pg unless seren-replicator is named: that binary takes passwords only in its argv."""
    if name == "seren-replicator":
        return ReplicatorEngine()
    if name == "pg":
        return PgEngine()
    raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}")


__all__ = [
    "ENGINE_NAMES",
    "Engine",
    "EngineJob",
    "Invocation",
    "OutputParser",
    "ParsedLine",
    "PgEngine",
    "ReplicatorEngine",
    "select_engine",
    "summarize_failure",
]
