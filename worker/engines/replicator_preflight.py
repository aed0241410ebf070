"""What runs before the seren-replicator binary's `init`: `python -m worker.engines.replicator_preflight`.

The binary's unattended `init` (`--yes`, which the worker must pass: there is nobody to answer
its prompts) drops a target database that exists and holds tables, or with `--include-tables`
drops and restores those tables (upstream `src/commands/init.rs`: "Auto-confirming drop").
Without `drop_existing` the service never drops or replaces what the user has, whatever the
engine. So, before the binary starts, this process:

- lists the databases the binary will write (its own rule, upstream `list_databases` and
  `should_replicate_database`: every non-template source database but postgres, template0,
  template1 and rdsadmin, narrowed by the job's database and table filters);
- refuses, naming them, those that exist on the target and hold a relation, unless an earlier
  attempt of this job created them (its checkpoint says so): the binary never starts;
- records, for each one the target lacks, that this job creates it (a checkpoint entry the
  worker acknowledges), so that a retry after a lost instance lets the binary replace its own
  half copy and nothing else;
- prints `STARTED_LINE` and replaces itself with the binary (same process: the worker's
  signals, exit code and output are the binary's from then on). The worker takes checkpoint
  events only before that line, so the binary's output can never forge one.

Input on stdin: the pg engine's input object (`worker.engines.pg.engine_input`) plus
`"binary_argv"`, the binary's argv (which holds both URLs: the binary takes them nowhere else).
"""

from __future__ import annotations

import os
import sys

import psycopg
from pydantic import ValidationError

from jobs.attempts import CheckpointState, DatabaseCheckpoint
from jobs.redact import redact
from jobs.spec import JobFilter
from jobs.urls import InvalidUrl
from worker.engines.pg import catalog
from worker.engines.pg.context import Context
from worker.engines.pg.engine_input import acknowledgements, read_engine_input
from worker.engines.pg.events import Emitter
from worker.engines.pg.resume import database_key, database_oid, record
from worker.engines.pg.tools import EngineError, connect

STARTED_LINE = "INFO: target checked; starting seren-replicator"
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Databases the binary never lists (upstream `migration::list_databases`).
_NEVER_COPIED = ["postgres", "template0", "template1", "rdsadmin"]
# A relation of the user's: what makes the binary's `database_is_empty` false (it counts
# information_schema.tables outside the system schemas; every relation, whatever its grants,
# is counted here, so nothing it would drop is missed).
_USER_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
"""


def copied_by_binary(job_filter: JobFilter, database: str) -> bool:
    """upstream `DatabaseFilter::should_replicate_database`."""
    if job_filter.include_databases:
        if database not in job_filter.include_databases:
            return False
    elif job_filter.include_tables and not any(
        catalog.database_of(entry) == database for entry in job_filter.include_tables
    ):
        return False
    return database not in job_filter.exclude_databases


def check_target(ctx: Context) -> None:
    """Refuse what the binary would drop; record what this job will create."""
    with connect(ctx.source) as src:
        listed = src.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> ALL(%s) ORDER BY datname",
            [_NEVER_COPIED],
        ).fetchall()
        databases = [name for (name,) in listed if copied_by_binary(ctx.job_filter, name)]
        keys = {name: database_key(ctx, src, name) for name in databases}
    to_create: list[str] = []
    refused: list[str] = []
    with connect(ctx.target) as tgt:
        for name in databases:
            if database_oid(tgt, name) is None:
                to_create.append(name)
                continue
            entry = ctx.checkpoint.get(name)
            if entry is not None and entry.created:
                ctx.emit.info(f"database {name}: left by an earlier attempt of this job; replaced")
                continue
            with connect(ctx.target, name) as conn:
                row = conn.execute(_USER_RELATIONS).fetchone()
            if row and int(row[0]):
                refused.append(f"{name} ({int(row[0])} relations)")
    if refused:
        raise EngineError(
            "target databases already exist and hold data: "
            + ", ".join(refused)
            + ". The seren-replicator engine would drop them; nothing was copied or changed. "
            "Set drop_existing to replace them, or exclude them with exclude_databases"
        )
    for name in to_create:
        record(ctx, name, DatabaseCheckpoint(key=keys[name], state=CheckpointState.COPYING, created=True))
    if to_create and not ctx.emit.wait_recorded():
        raise EngineError("the worker did not record which target databases this job creates")


def main() -> int:
    emit = Emitter(secrets=[], acks=acknowledgements())
    try:
        command, ctx, raw = read_engine_input(sys.stdin.read(), emit)
        binary_argv = [str(arg) for arg in raw["binary_argv"]]
    except (InvalidUrl, ValueError, ValidationError, AttributeError, KeyError, TypeError) as exc:
        emit.error(f"invalid engine input: {redact(str(exc), emit.secrets)}")
        return EXIT_BAD_INPUT
    emit.secrets += [arg for arg in binary_argv if "://" in arg]
    try:
        check_target(ctx)
    except EngineError as exc:
        emit.error(str(exc))
        return EXIT_FAILED
    except psycopg.Error as exc:
        detail = redact(str(exc).strip(), emit.secrets)
        emit.error(f"checking the target before {command.value} failed: {detail}")
        return EXIT_FAILED
    if emit.acks is not None:
        emit.acks.close()  # the binary records no checkpoint
    sys.stdout.flush()
    sys.stderr.write(STARTED_LINE + "\n")
    sys.stderr.flush()
    try:
        os.execv(binary_argv[0], binary_argv)  # noqa: S606 - the binary's argv, built by the adapter
    except OSError as exc:
        emit.error(f"cannot start seren-replicator: {exc.strerror}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
