"""The `copy_roles` option: the roles a copy's grants and policies name, made on the target.

Only what a role is allowed to be without a superuser's say: LOGIN, INHERIT, CREATEDB,
CREATEROLE, connection limit, validity and memberships among the roles it creates. Never a
password (a login role must be given one on the target), never SUPERUSER, REPLICATION
or BYPASSRLS. A role the target already has is left as it is: it gets no member and
becomes a member of nothing, whatever the source's role of that name had.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from worker.engines.pg.context import Context
from worker.engines.pg.tools import EngineError, connect

# Roles that a database's privileges, default privileges and policies name.
_REFERENCED = """
WITH named(role) AS (
    SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
    UNION SELECT (aclexplode(attacl)).grantee FROM pg_attribute WHERE attacl IS NOT NULL
    UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc WHERE proacl IS NOT NULL
    UNION SELECT (aclexplode(typacl)).grantee FROM pg_type WHERE typacl IS NOT NULL
    UNION SELECT (aclexplode(lomacl)).grantee FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
    UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
    UNION SELECT defaclrole FROM pg_default_acl
    UNION SELECT unnest(polroles) FROM pg_policy
)
SELECT r.rolname FROM pg_roles r
WHERE r.oid IN (SELECT role FROM named) AND r.rolname <> current_user AND r.rolname NOT LIKE 'pg\\_%'
"""

_ATTRIBUTES = """
SELECT rolname, rolcanlogin, rolinherit, rolcreatedb, rolcreaterole, rolconnlimit, rolvaliduntil::text
FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname
"""

_MEMBERSHIPS = """
SELECT g.rolname, m.rolname FROM pg_auth_members a
JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
WHERE g.rolname = ANY(%(names)s) AND m.rolname = ANY(%(names)s)
"""


@dataclass(frozen=True)
class Role:
    name: str
    login: bool
    inherit: bool
    createdb: bool
    createrole: bool
    connection_limit: int
    valid_until: str | None

    def create_statement(self) -> sql.Composed:
        options = [
            "LOGIN" if self.login else "NOLOGIN",
            "INHERIT" if self.inherit else "NOINHERIT",
            "CREATEDB" if self.createdb else "NOCREATEDB",
            "CREATEROLE" if self.createrole else "NOCREATEROLE",
        ]
        statement = sql.SQL("CREATE ROLE {} WITH " + " ".join(options) + " CONNECTION LIMIT {}").format(
            sql.Identifier(self.name), sql.Literal(self.connection_limit)
        )
        if self.valid_until is not None:
            statement += sql.SQL(" VALID UNTIL {}").format(sql.Literal(self.valid_until))
        return statement


def referenced_roles(ctx: Context, databases: list[str]) -> list[str]:
    names: set[str] = set()
    for database in databases:
        with connect(ctx.source, database) as src:
            names.update(r[0] for r in src.execute(_REFERENCED))
    return sorted(names)


def copy_roles(ctx: Context, databases: list[str]) -> list[str]:
    """Create the roles the databases name that the target lacks; the names created."""
    wanted = referenced_roles(ctx, databases)
    if not wanted:
        return []
    with connect(ctx.source) as src:
        roles = [Role(*row) for row in src.execute(_ATTRIBUTES, [wanted])]
        memberships = src.execute(_MEMBERSHIPS, {"names": wanted}).fetchall()
    with connect(ctx.target) as tgt:
        present = {
            r[0] for r in tgt.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [wanted])
        }
        created = [role for role in roles if role.name not in present]
        try:
            for role in created:
                tgt.execute(role.create_statement())
            made = {role.name for role in created}
            for group, member in memberships:
                # Both ends made by this job: a role the target had keeps its members and its
                # memberships (a source naming a role like the target's admin gains nothing).
                if group in made and member in made:
                    tgt.execute(
                        sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member))
                    )
        except psycopg.Error as exc:
            raise EngineError(f"creating roles on the target failed: {str(exc).strip()}") from exc
    names = [role.name for role in created]
    if names:
        ctx.emit.info(f"created roles on the target (without passwords): {', '.join(names)}")
    if any(role.login for role in created):
        ctx.emit.warn("login roles were created without passwords: set them on the target before use")
    return names
