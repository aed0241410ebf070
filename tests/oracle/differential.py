"""The differential check: the engine's copy of a database against `pg_dump -Fc | pg_restore`'s.

For one source database, the reference is `pg_dump -Fc` piped into `pg_restore --create`
on a server of its own; the copy is the engine's `init` into the target server. The judge
(tests/oracle/judge.py) compares the two; every difference fails the check except those the
engine's README documents, each named once in `ALLOWED_DIFFERENCES`.
"""

from __future__ import annotations

import subprocess

import psycopg

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres, bin_dir
from tests.engines.engine_helpers import EngineRun, engine_job, reset_target, run_pg_engine
from tests.oracle.judge import Scope, conninfo, differences, snapshot, tool_env

# What worker/engines/README.md ("Limits") documents as copied differently from
# pg_dump | pg_restore; the judge leaves each out of the comparison, and nothing else.
ALLOWED_DIFFERENCES = {
    "ownership": "Ownership is not copied (--no-owner: the target user owns everything)",
    "grants without copy_roles": "roles and grants only with copy_roles",
    "database-level grants": "database-level grants (GRANT CONNECT ON DATABASE) ... are not copied",
    "per-role database settings": "per-role database settings (ALTER ROLE ... IN DATABASE ... SET)",
}


def allowed_scope(copy_roles: bool) -> Scope:
    """What the judge compares for a copy made with or without `copy_roles`."""
    return Scope(owners=False, grants=copy_roles, database_grants=False, role_database_settings=False)


def restore_reference(
    source: LocalPostgres, reference: LocalPostgres, database: str, copy_roles: bool
) -> None:
    """`pg_dump -Fc | pg_restore --create` of `database` into the reference server."""
    tools = bin_dir()
    if copy_roles:
        roles = subprocess.run(
            [
                str(tools / "pg_dumpall"),
                "--roles-only",
                "--no-role-passwords",
                "-d",
                conninfo(source, "postgres"),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=tool_env(source),
        ).stdout
        # Roles the reference server has already (its superuser, an earlier example's) fail
        # their CREATE ROLE harmlessly; psql goes on.
        subprocess.run(
            [str(tools / "psql"), "-q", "-d", conninfo(reference, "postgres")],
            input=roles,
            capture_output=True,
            text=True,
            check=True,
            env=tool_env(reference),
        )
    # In the database's own encoding: pg_dump otherwise takes the client_encoding the
    # database may set for its sessions, and cannot read text that encoding lacks.
    with psycopg.connect(source.url(database)) as conn:
        row = conn.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", [database]
        ).fetchone()
    assert row is not None
    dump = subprocess.Popen(
        [str(tools / "pg_dump"), "-Fc", "--encoding", row[0], "-d", conninfo(source, database)],
        stdout=subprocess.PIPE,
        env=tool_env(source),
    )
    restore = subprocess.run(
        [
            str(tools / "pg_restore"),
            "--create",
            "--exit-on-error",
            "--no-owner",
            *([] if copy_roles else ["--no-acl"]),
            "-d",
            conninfo(reference, "postgres"),
        ],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        env=tool_env(reference),
    )
    assert dump.stdout is not None
    dump.stdout.close()
    assert dump.wait() == 0, "pg_dump of the source failed"
    assert restore.returncode == 0, f"the reference restore failed: {restore.stderr}"


def engine_init(
    source: LocalPostgres, target: LocalPostgres, database: str, copy_roles: bool, env: dict[str, str]
) -> EngineRun:
    job = engine_job(
        Command.INIT,
        source.url(),
        target.url(),
        {"include_databases": [database]},
        enable_sync=False,
        copy_roles=copy_roles,
    )
    return run_pg_engine(job, extra_env=env)


def differential_check(
    source: LocalPostgres,
    reference: LocalPostgres,
    target: LocalPostgres,
    database: str,
    *,
    copy_roles: bool = False,
    env: dict[str, str] | None = None,
) -> list[str]:
    """The differences between the reference restore and the engine's copy of `database`.

    The reference and target servers are emptied first. An engine that fails where the
    reference succeeded is a difference too.
    """
    reset_target(reference)
    reset_target(target)
    restore_reference(source, reference, database, copy_roles)
    run = engine_init(source, target, database, copy_roles, env or {})
    if run.returncode != 0:
        return [f"the engine's init failed where pg_restore succeeded: {run.text[-2000:]}"]
    scope = allowed_scope(copy_roles)
    return differences(snapshot(reference, database, scope), snapshot(target, database, scope))
