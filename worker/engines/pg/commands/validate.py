"""validate: read the facts once, run each check over them, report what the checks found.

A check is a function of the `Facts` that returns findings: a problem fails validation,
a warning is reported and does not, a note is information for the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from worker.engines.pg import catalog, source_code
from worker.engines.pg.context import Context
from worker.engines.pg.preflight import job_problems
from worker.engines.pg.tools import EngineError, connect, find_tools, server_major


class Severity(StrEnum):
    PROBLEM = "problem"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    text: str


def problem(text: str) -> Finding:
    return Finding(Severity.PROBLEM, text)


def warning(text: str) -> Finding:
    return Finding(Severity.WARNING, text)


def note(text: str) -> Finding:
    return Finding(Severity.NOTE, text)


@dataclass
class Facts:
    """What validate reads from both servers before any check runs."""

    ctx: Context
    src: psycopg.Connection
    tgt: psycopg.Connection
    source_major: int
    target_major: int
    databases: list[str]
    sizes: dict[str, int]
    existing_targets: set[str]


Check = Callable[[Facts], Iterator[Finding]]


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def server_versions(facts: Facts) -> Iterator[Finding]:
    source, target = facts.src.info.server_version, facts.tgt.info.server_version
    yield note(f"source PostgreSQL {source}, target PostgreSQL {target}")
    if facts.target_major < facts.source_major:
        yield problem(f"target PostgreSQL {facts.target_major} is older than source {facts.source_major}")


def client_tools(facts: Facts) -> Iterator[Finding]:
    try:
        tools = find_tools(facts.source_major)
    except EngineError as exc:
        yield problem(str(exc))
        return
    yield note(f"pg_dump {tools.major} from {tools.bin_dir}")


def database_sizes(facts: Facts) -> Iterator[Finding]:
    for database in facts.databases:
        yield note(f"source database {database}: {_mb(facts.sizes.get(database, 0))}")


def sync_prerequisites(facts: Facts) -> Iterator[Finding]:
    wal_level = facts.src.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
    yield note(f"source wal_level = {wal_level}")
    if not facts.ctx.options.enable_sync:
        return
    if wal_level != "logical":
        yield problem(
            f"source wal_level is {wal_level}; continuous sync needs wal_level = logical "
            "(or submit with enable_sync = false)"
        )
    role = facts.src.execute(
        "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if role is not None and not (role[0] or role[1]):
        yield problem("the source user lacks the REPLICATION attribute needed for sync")
    slots = int(facts.src.execute("SHOW max_replication_slots").fetchone()[0])  # type: ignore[index]
    if slots < len(facts.databases):
        yield problem(f"source max_replication_slots = {slots}, fewer than {len(facts.databases)} databases")


def target_rights(facts: Facts) -> Iterator[Finding]:
    role = facts.tgt.execute(
        "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if role is None:
        return
    if not (role[0] or role[1]):
        yield problem("the target user may not create databases (needs CREATEDB)")
    if facts.ctx.options.enable_sync and not role[0]:
        yield warning("the target user is not a superuser: creating subscriptions may be refused")


def source_tables_readable(facts: Facts) -> Iterator[Finding]:
    for database in facts.databases:
        with connect(facts.ctx.source, database) as conn:
            unreadable = conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg\\_toast%' "
                "AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1 LIMIT 10"
            ).fetchall()
        if unreadable:
            yield problem(f"cannot read {database}: {', '.join(r[0] for r in unreadable)}")


def copy_blockers(facts: Facts) -> Iterator[Finding]:
    """Row-level security, replica identities, filter dependencies, roles of policies."""
    for text in job_problems(facts.ctx, facts.databases, with_sync=facts.ctx.options.enable_sync):
        yield problem(text)


def code_from_the_source(facts: Facts) -> Iterator[Finding]:
    """What the copy would run of the source's code on the target (worker.engines.pg.source_code)."""
    for text in source_code.job_problems(facts.ctx, facts.databases, with_sync=facts.ctx.options.enable_sync):
        yield problem(text)


def target_databases_empty(facts: Facts) -> Iterator[Finding]:
    if facts.ctx.options.drop_existing:
        return
    for database in facts.databases:
        if database not in facts.existing_targets:
            continue
        with connect(facts.ctx.target, database) as conn:
            if catalog.user_object_count(conn):
                yield warning(
                    f"target database {database} exists and is not empty (init needs drop_existing)"
                )


CHECKS: list[Check] = [
    server_versions,
    client_tools,
    database_sizes,
    sync_prerequisites,
    target_rights,
    source_tables_readable,
    copy_blockers,
    code_from_the_source,
    target_databases_empty,
]


def _connect_both(ctx: Context) -> tuple[psycopg.Connection, psycopg.Connection]:
    try:
        src = connect(ctx.source)
    except psycopg.OperationalError as exc:
        raise EngineError(f"cannot connect to the source ({ctx.source.redacted}): {exc}") from exc
    try:
        tgt = connect(ctx.target)
    except psycopg.OperationalError as exc:
        src.close()
        raise EngineError(f"cannot connect to the target ({ctx.target.redacted}): {exc}") from exc
    return src, tgt


def validate(ctx: Context) -> None:
    emit = ctx.emit
    src, tgt = _connect_both(ctx)
    with src, tgt:
        databases = ctx.selected_databases(src)
        facts = Facts(
            ctx=ctx,
            src=src,
            tgt=tgt,
            source_major=server_major(src),
            target_major=server_major(tgt),
            databases=databases,
            sizes=dict(
                src.execute(
                    "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                    [databases],
                ).fetchall()
            ),
            existing_targets={
                r[0]
                for r in tgt.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [databases])
            },
        )
        findings = [finding for check in CHECKS for finding in check(facts)]
    for finding in findings:
        if finding.severity is Severity.NOTE:
            emit.info(finding.text)
    warnings = [f.text for f in findings if f.severity is Severity.WARNING]
    problems = [f.text for f in findings if f.severity is Severity.PROBLEM]
    for text in warnings:
        emit.warn(text)
    if problems:
        for text in problems:
            emit.error(text)
        raise EngineError("validation failed: " + "; ".join(problems))
    message = (
        f"validation passed: {len(databases)} databases, {_mb(sum(facts.sizes.values()))}, "
        f"source PostgreSQL {facts.source_major}, target PostgreSQL {facts.target_major}"
        + (f"; {len(warnings)} warnings" if warnings else "")
    )
    emit.progress(
        phase="done",
        databases_total=len(databases),
        databases_completed=len(databases),
        percent=100.0,
        message=message,
    )
    emit.info(message)
