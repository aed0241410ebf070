"""`copy_roles` leaves the roles the target already had as they are: no new members, no
memberships of theirs, whatever the source says about roles of the same name."""

from __future__ import annotations

import psycopg
from engine_helpers import create_database, engine_job, run_pg_engine
from psycopg import sql

from jobs.spec import Command
from local_cloud.postgres import LocalPostgres

EXISTING = "app_admin"
CREATED = ("app_login", "app_readers")


def _drop_roles(server: LocalPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS granted WITH (FORCE)")
        for role in (*CREATED, EXISTING):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _member(conn: psycopg.Connection, group: str, member: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s AND m.rolname = %s)",
        [group, member],
    ).fetchone()
    assert row is not None
    return bool(row[0])


def test_copy_roles_never_adds_members_to_or_grants_a_role_the_target_had(
    fidelity_source: LocalPostgres, fidelity_target: LocalPostgres
) -> None:
    for server in (fidelity_source, fidelity_target):
        _drop_roles(server)
    with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
        # The target's own administrators: they read and write every table.
        conn.execute(f"CREATE ROLE {EXISTING} NOLOGIN IN ROLE pg_read_all_data, pg_write_all_data")
    with psycopg.connect(fidelity_source.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {EXISTING} NOLOGIN")
        conn.execute("CREATE ROLE app_readers NOLOGIN")
        conn.execute(
            f"CREATE ROLE app_login LOGIN PASSWORD 'app-login-test-pw' IN ROLE {EXISTING}, app_readers"
        )
        conn.execute(f"GRANT app_readers TO {EXISTING}")
    create_database(
        fidelity_source,
        "granted",
        f"""
        CREATE TABLE docs (id int PRIMARY KEY, body text);
        GRANT SELECT ON docs TO app_readers, app_login, {EXISTING};
        """,
    )
    try:
        run = run_pg_engine(
            engine_job(
                Command.INIT,
                fidelity_source.url(),
                fidelity_target.url(),
                {"include_databases": ["granted"]},
                copy_roles=True,
                enable_sync=False,
            )
        )
        assert run.returncode == 0, run.text
        with psycopg.connect(fidelity_target.url(), autocommit=True) as conn:
            assert conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", [list(CREATED)]
            ).fetchall() == [(name,) for name in CREATED]
            # Among the roles the job made, the source's memberships hold.
            assert _member(conn, "app_readers", "app_login")
            # The target's role got no member and no membership from the source.
            assert not _member(conn, EXISTING, "app_login")
            assert not _member(conn, "app_readers", EXISTING)
            assert conn.execute(
                "SELECT pg_has_role('app_login', 'pg_write_all_data', 'USAGE')"
            ).fetchone() == (False,)
    finally:
        for server in (fidelity_source, fidelity_target):
            _drop_roles(server)
