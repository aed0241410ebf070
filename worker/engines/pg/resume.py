"""init's resume: which target databases earlier attempts of this job finished, and which
one they left half copied (`jobs.attempts.DatabaseCheckpoint`, recorded by the worker on
the job item from the events this module prints).

A finished database is kept when its key still matches (same source database, by OID, and
the same filter) and, with sync, its replication slot still holds the copy's point in
time; otherwise it is copied again. A database is dropped before it is copied again only if
this job created it (or replaced it with `drop_existing`). One the user created and this job
found empty before filling it is emptied instead (`empty_again`): the database itself, with
its owner and grants, stays. Any other existing database is left as it is
(`prepare_target` refuses it unless it is empty). `no_resume` keeps nothing but still drops
or empties what this job filled. A worker that stops the engine to hand the job back keeps
the finished databases' slots and publications for the next attempt; if the job then runs
out of attempts they stay on the source until an `init` or `sync` of the same databases and
target reuses or drops them (their names are fixed per database and target).
"""

from __future__ import annotations

import hashlib
import json

import psycopg
from psycopg import sql

from jobs.attempts import CheckpointState, DatabaseCheckpoint
from worker.engines.pg.catalog import FIRST_NORMAL_OID, USER_SCHEMAS
from worker.engines.pg.context import Context
from worker.engines.pg.replication import drop_subscriptions, replication_name
from worker.engines.pg.tools import EngineError, connect

# The engine's exit code when the worker stops it with SIGTERM (worker.engines.pg.__main__).
TERMINATED = 143

# The objects in `public` that go only with themselves (not with a table, an operator family or
# an extension), each as the statement that drops it and whatever depends on it. Identities
# come schema-qualified and quoted by the server; pg_identify_object calls a domain "type".
_DROP_PUBLIC_OBJECTS = """
SELECT format('DROP %s IF EXISTS %s CASCADE', upper(o.type), o.identity)
FROM pg_depend d CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
WHERE d.refclassid = 'pg_namespace'::regclass AND d.deptype = 'n'
  AND d.refobjid = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
  AND NOT EXISTS (SELECT 1 FROM pg_depend owner
                  WHERE owner.classid = d.classid AND owner.objid = d.objid AND owner.objsubid = 0
                    AND owner.deptype IN ('a', 'i', 'e', 'x', 'P', 'S'))
"""

# What the copy can make outside any schema (`catalog.user_object_count` counts these too),
# once the extensions, schemas and public's objects are gone (and with them whatever of these
# depended on them): casts between the system's types, foreign-data wrappers (their servers
# and user mappings go with them).
_DROP_OBJECTS_OUTSIDE_SCHEMAS = sql.SQL(
    """
SELECT format('DROP CAST IF EXISTS (%s AS %s) CASCADE', castsource::regtype, casttarget::regtype)
FROM pg_cast WHERE oid >= {}
UNION ALL
SELECT format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', fdwname) FROM pg_foreign_data_wrapper
"""
).format(FIRST_NORMAL_OID)


def database_key(ctx: Context, src: psycopg.Connection, database: str) -> str:
    """What the copy of `database` is of: the source server and database (its OID changes
    when it is recreated) and the job's filter."""
    row = src.execute("SELECT oid FROM pg_database WHERE datname = %s", [database]).fetchone()
    identity = {
        "source": f"{ctx.source.host}:{ctx.source.port}",
        "database": database,
        "oid": int(row[0]) if row else None,
        "filter": ctx.job_filter.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def finished_earlier(
    ctx: Context, src: psycopg.Connection, database: str, key: str, *, with_sync: bool
) -> bool:
    entry = ctx.checkpoint.get(database)
    if ctx.options.no_resume or entry is None or entry.state is not CheckpointState.DONE or entry.key != key:
        return False
    if with_sync:
        slot = replication_name(database, ctx.target)
        held = src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
        if held is None:
            ctx.emit.info(f"database {database}: its replication slot is gone; copying it again")
            return False
    return True


def start_copy(ctx: Context, tgt: psycopg.Connection, database: str, key: str) -> None:
    """Before `prepare_target`: drop (or empty) what an earlier attempt of this job left of the
    database, then record that its copy starts (and whether this job creates the target database)."""
    entry = ctx.checkpoint.get(database)
    oid = database_oid(tgt, database)
    exists = oid is not None
    if exists and entry is not None and entry.created:
        drop_subscriptions(ctx, database)
        tgt.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        ctx.emit.info(f"dropped target database {database}, left half copied by an earlier attempt")
        exists = False
    elif exists and entry is not None and entry.found_empty and entry.database_oid == oid:
        empty_again(ctx, database)
        ctx.emit.info(
            f"emptied target database {database}, left half copied by an earlier attempt "
            "(it existed before this job: the database itself is kept)"
        )
    created = not exists or ctx.options.drop_existing or (entry is not None and entry.created)
    # `found_empty` is not carried over: `prepare_target` checks the database again.
    record(ctx, database, DatabaseCheckpoint(key=key, state=CheckpointState.COPYING, created=created))
    # Only once the job item says so may the database be created: a retry must be able to tell
    # a database this job created from the user's.
    if not ctx.emit.wait_recorded():
        raise EngineError(f"database {database}: the worker did not record the copy's start")


def filling_existing(ctx: Context, tgt: psycopg.Connection, database: str) -> None:
    """After `prepare_target` found the user's database empty, before anything is written into
    it: record so, for a later attempt to empty it again rather than refuse it as not empty."""
    entry = ctx.checkpoint[database]
    found = {"found_empty": True, "database_oid": database_oid(tgt, database)}
    record(ctx, database, entry.model_copy(update=found))
    if not ctx.emit.wait_recorded():
        raise EngineError(f"database {database}: the worker did not record that it was found empty")


def database_oid(tgt: psycopg.Connection, database: str) -> int | None:
    row = tgt.execute("SELECT oid::int8 FROM pg_database WHERE datname = %s", [database]).fetchone()
    return int(row[0]) if row else None


def empty_again(ctx: Context, database: str) -> None:
    """Drop what the copy put into a database it found empty, back to what
    `catalog.user_object_count` calls empty: the extensions, the schemas but `public`, the
    objects in `public`, casts and foreign-data wrappers, the large objects, and this job's
    subscription. A statement each (not one transaction, whose locks a large copy would
    exhaust): a loss half way leaves the checkpoint saying `found_empty`, and the next attempt
    carries on."""
    drop_subscriptions(ctx, database, only=replication_name(database, ctx.target))
    with connect(ctx.target, database) as conn:
        extensions = conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'").fetchall()
        for (name,) in extensions:
            conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        schemas = conn.execute(
            sql.SQL("SELECT nspname FROM ({}) s WHERE nspname <> 'public'").format(USER_SCHEMAS)
        ).fetchall()
        for (name,) in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        for (statement,) in conn.execute(_DROP_PUBLIC_OBJECTS).fetchall():
            conn.execute(statement)
        for (statement,) in conn.execute(_DROP_OBJECTS_OUTSIDE_SCHEMAS).fetchall():
            conn.execute(statement)
        conn.execute("SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata")


def finish_copy(ctx: Context, database: str, key: str) -> None:
    entry = ctx.checkpoint[database]
    record(ctx, database, entry.model_copy(update={"key": key, "state": CheckpointState.DONE}))


def kept_for_next_attempt(ctx: Context, database: str, exc: BaseException) -> bool:
    """Stopped by the worker (SIGTERM: the instance is going away, the job goes on as its next
    attempt), a finished database keeps its slot and publication: the next attempt subscribes
    from them instead of copying it again. Any other failure drops them."""
    entry = ctx.checkpoint.get(database)
    handed_back = isinstance(exc, SystemExit) and exc.code == TERMINATED
    return handed_back and entry is not None and entry.state is CheckpointState.DONE


def drop_half_copy(ctx: Context, database: str, exc: BaseException) -> None:
    """A copy that failed leaves no half-made database this job created: unless the worker
    stopped the engine to hand the job back (the next attempt resumes from it)."""
    entry = ctx.checkpoint.get(database)
    handed_back = isinstance(exc, SystemExit) and exc.code == TERMINATED
    if handed_back or entry is None or not entry.created or entry.state is CheckpointState.DONE:
        return
    try:
        with connect(ctx.target) as tgt:
            drop_subscriptions(ctx, database)
            tgt.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    except (psycopg.Error, EngineError) as cleanup:
        ctx.emit.warn(f"could not drop the half-copied target database {database}: {str(cleanup).strip()}")
        return
    record(ctx, database, entry.model_copy(update={"created": False}))
    ctx.emit.info(f"dropped target database {database}, which this failed copy had created")


def record(ctx: Context, database: str, entry: DatabaseCheckpoint) -> None:
    ctx.checkpoint[database] = entry
    ctx.emit.checkpoint(database, entry.model_dump(mode="json"))
