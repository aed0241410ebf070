"""Replication engines: what the worker runs for a job, and how to read its output.

engine = select_engine(settings.engine, private_hosts_allowed=...)   # "auto" | "pg" | "seren-replicator"
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
from worker.engines.replicator import ReplicatorEngine, binary_available

ENGINE_NAMES = ("auto", "pg", "seren-replicator")


def select_engine(name: str = "auto", *, private_hosts_allowed: bool = False) -> Engine:
    """ "auto" is seren-replicator when its binary is present (the production engine), else pg.

    The binary's own pg_dump/psql children resolve host names again instead of using the
    address the worker checked: with private ranges allowed, a name that answers differently
    later could reach inside the VPC, so "auto" then runs pg, which connects only to checked
    addresses. Without them the security group's egress (public ranges only) stops that.
    """
    if name == "auto":
        use_binary = binary_available() and not private_hosts_allowed
        return ReplicatorEngine() if use_binary else PgEngine()
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
