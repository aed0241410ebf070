"""What every command works with: the job's inputs, and the databases and tables it covers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import psycopg

from jobs.attempts import DatabaseCheckpoint
from jobs.spec import JobFilter, JobOptions
from jobs.urls import ConnectionUrl
from worker.engines.pg import catalog, locks
from worker.engines.pg.catalog import Table
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import EngineError, connect

WORKERS_ENV = "PG_ENGINE_JOBS"
# What libpq would read as a connection string, or a control character: no legitimate
# database has these in its name, and a source that does is trying to redirect a tool.
_UNSAFE_NAME = re.compile(r"=|://|[\x00-\x1f\x7f]")


def refuse_unsafe_names(databases: list[str]) -> None:
    unsafe = [name for name in databases if _UNSAFE_NAME.search(name)]
    if unsafe:
        shown = ", ".join(repr(name[:80]) for name in unsafe[:3])
        raise EngineError(
            f"refusing source database names that a client library could read as connection "
            f"settings ('=', '://' or control characters): {shown}; exclude them with exclude_databases"
        )


SPLIT_ENV = "PG_ENGINE_SPLIT_MB"
DEFAULT_SPLIT_MB = 256


def default_workers() -> int:
    if os.environ.get(WORKERS_ENV):
        return max(1, int(os.environ[WORKERS_ENV]))
    # Copies wait on I/O at both ends: twice the cores keeps both servers busy.
    return min(8, max(2, 2 * (os.cpu_count() or 1)))


def default_split_bytes() -> int:
    """Tables larger than this are copied as several block ranges at once; 0 turns that off."""
    return max(0, int(os.environ.get(SPLIT_ENV) or DEFAULT_SPLIT_MB)) << 20


@dataclass
class Context:
    source: ConnectionUrl
    target: ConnectionUrl
    job_filter: JobFilter
    options: JobOptions
    emit: Emitter
    workers: int = field(default_factory=default_workers)
    split_bytes: int = field(default_factory=default_split_bytes)
    # init: what earlier attempts of this job left on the target (worker.engines.pg.resume).
    checkpoint: dict[str, DatabaseCheckpoint] = field(default_factory=dict)

    def selected_databases(self, src: psycopg.Connection) -> list[str]:
        missing = catalog.missing_databases(src, self.job_filter)
        if missing:
            raise EngineError(f"the source has no database named {', '.join(missing)}")
        uncopyable = catalog.uncopyable_databases(src, self.job_filter)
        if uncopyable:
            # Left out without a word otherwise: the job would report one database fewer.
            raise EngineError(
                f"the job names source databases that cannot be copied: {', '.join(uncopyable)}; "
                "allow connections to them and make them not templates "
                "(ALTER DATABASE ... ALLOW_CONNECTIONS true IS_TEMPLATE false), or leave them out"
            )
        databases = catalog.select_databases(src, self.job_filter)
        if not databases:
            raise EngineError("no source database matches the job's filter")
        refuse_unsafe_names(databases)
        return databases

    def tables(self, database: str) -> tuple[list[Table], list[Table]]:
        """(chosen, excluded) tables of `database` on the source."""
        with connect(self.source, database) as conn:
            # Sizing a table locks it: one held exclusively would make this wait for ever.
            locks.lock_timeout_setting(conn)
            try:
                every = catalog.list_tables(conn)
            except psycopg.errors.LockNotAvailable:
                raise EngineError(
                    f"could not read the tables of {database} within {locks.lock_timeout_seconds()} s: "
                    f"{locks.exclusive_holders(conn)}; retry once it is done, "
                    f"or raise {locks.LOCK_TIMEOUT_ENV}"
                ) from None
        chosen, _ = catalog.select_tables(every, database, self.job_filter)
        return chosen, [t for t in every if t not in chosen]

    def has_include_rules(self, database: str) -> bool:
        return any(catalog.database_of(entry) == database for entry in self.job_filter.include_tables)

    def has_table_rules(self, database: str) -> bool:
        return self.has_include_rules(database) or any(
            catalog.database_of(entry) == database for entry in self.job_filter.exclude_tables
        )
