"""A judge of two databases built only on PostgreSQL's own tools and catalogs.

It shares nothing with the engine it judges (nothing from `worker/`) and normalizes only
what pg_dump itself prints the same way for any database: the dump's header and session
lines before its first entry and its closing lines. Every entry's own text is compared as
pg_dump prints it, function bodies, `SET` and `--` lines inside them included.

`snapshot(server, database, scope)` reads:
- the schema: `pg_dump --schema-only`, entry by entry (type, schema, name, owner, the
  tablespace and access method pg_dump selects for it, and its text);
- every table's and populated materialized view's rows, with the columns in the order of
  their names, as a hash of the sorted `COPY ... TO STDOUT` lines: a column order that
  differs is judged by values, a value in another column is a difference;
- every sequence's `last_value` and `is_called`;
- large objects: content, comment, and owner and grants as `scope` says;
- the database's properties (pg_database), comment, tablespace and settings
  (pg_db_role_setting).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from local_cloud.postgres import LocalPostgres, bin_dir

# "-- Name: x; Type: TABLE; Schema: public; Owner: me", between two "--" lines.
_ENTRY_HEADER = re.compile(r"^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")
_DUMP_END = "-- PostgreSQL database dump complete"
# What pg_dump selects before an entry, printed only when it changes from the entry before.
_SELECTED = re.compile(r"^SET (default_tablespace|default_table_access_method) = (.*);$")
_STORAGE_TYPES = {"TABLE", "INDEX", "MATERIALIZED VIEW", "CONSTRAINT"}
# pg_database columns that say nothing about a copy: identity, the server's own counters.
_DATABASE_NOISE = {"oid", "datname", "datfrozenxid", "datminmxid", "datlastsysoid", "dattablespace"}


@dataclass(frozen=True)
class Scope:
    """What the judge compares beyond schema text, rows, sequences and large objects' content."""

    owners: bool = True
    grants: bool = True
    database_grants: bool = True
    role_database_settings: bool = True


def tool_env(server: LocalPostgres) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**env, "PGPASSWORD": server.password}


def conninfo(server: LocalPostgres, database: str) -> str:
    return psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=server.port, user=server.user, dbname=database
    )


def schema_entries(server: LocalPostgres, database: str, scope: Scope) -> Counter[tuple[str, ...]]:
    """The entries of `pg_dump --schema-only`, as (type, schema, name, owner, selected, text)."""
    # UTF8 whatever client_encoding the database sets for its sessions (LATIN1 cannot hold
    # every character of a UTF8 database's comments and bodies).
    argv = [
        str(bin_dir() / "pg_dump"),
        "--schema-only",
        "--encoding=UTF8",
        "--no-publications",
        "--no-subscriptions",
    ]
    argv += [] if scope.owners else ["--no-owner"]
    argv += [] if scope.grants else ["--no-acl"]
    dump = subprocess.run(
        [*argv, "-d", conninfo(server, database)],
        capture_output=True,
        text=True,
        check=True,
        env=tool_env(server),
    ).stdout
    return parse_entries(dump)


def parse_entries(dump: str) -> Counter[tuple[str, ...]]:
    lines = dump.splitlines()
    starts = [
        i
        for i in range(1, len(lines) - 1)
        if lines[i - 1] == "--" and lines[i + 1] == "--" and _ENTRY_HEADER.match(lines[i])
    ]
    end = next(i for i in range(len(lines)) if lines[i] == _DUMP_END) - 1
    selected = {"default_tablespace": "", "default_table_access_method": ""}
    entries: Counter[tuple[str, ...]] = Counter()
    for start, stop in zip(starts, [*starts[1:], end + 1][: len(starts)], strict=True):
        header = _ENTRY_HEADER.match(lines[start])
        assert header is not None
        name, kind, schema, owner = header.groups()
        body = lines[start + 2 : stop - 1]
        while body and (not body[0] or _SELECTED.match(body[0])):
            chosen = _SELECTED.match(body[0])
            if chosen:
                selected[chosen.group(1)] = chosen.group(2)
            body = body[1:]
        storage = ""
        if kind in _STORAGE_TYPES:
            storage = f"tablespace {selected['default_tablespace']}, "
            storage += f"access method {selected['default_table_access_method']}"
        entries[(kind, schema, name, owner, storage, "\n".join(body).strip())] += 1
    return entries


def _rows_hash(conn: psycopg.Connection, relation: sql.Identifier, columns: list[str]) -> tuple[int, str]:
    """(rows, sha256 of the sorted COPY text lines), the columns in name order."""
    query = sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns) if columns else sql.SQL(""), relation
    )
    data = bytearray()
    with conn.cursor().copy(query) as copy:
        for block in copy:
            data += block
    rows = sorted(bytes(data).splitlines())
    digest = hashlib.sha256("\x00".join(columns).encode())
    for row in rows:
        digest.update(row + b"\n")
    return len(rows), digest.hexdigest()


def snapshot(server: LocalPostgres, database: str, scope: Scope) -> dict[str, Any]:
    found: dict[str, Any] = {"schema": schema_entries(server, database, scope)}
    with psycopg.connect(
        conninfo(server, database), password=server.password, client_encoding="UTF8", autocommit=True
    ) as conn:
        # Fixed output forms, whatever the database's own settings say.
        for setting, value in (
            ("TimeZone", "UTC"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("extra_float_digits", "3"),
            ("bytea_output", "hex"),
            ("row_security", "off"),
            ("search_path", "pg_catalog"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", [setting, value])
        relations = conn.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispopulated, "
            " array(SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 "
            '       AND NOT attisdropped ORDER BY attname COLLATE "C") '
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 2, 3"
        ).fetchall()
        for _, schema, name, kind, populated, columns in relations:
            ident = sql.Identifier(schema, name)
            if kind == "S":
                found[f"sequence {schema}.{name}"] = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(ident)
                ).fetchone()
            elif kind == "m" and not populated:
                found[f"materialized view {schema}.{name}"] = "not populated"
            else:
                label = "materialized view" if kind == "m" else "table"
                found[f"{label} {schema}.{name} ({', '.join(columns)})"] = _rows_hash(conn, ident, columns)
        for oid, digest, comment, owner, acl in conn.execute(
            "SELECT oid::int8, md5(lo_get(oid)), obj_description(oid, 'pg_largeobject'), "
            "pg_get_userbyid(lomowner), lomacl::text FROM pg_largeobject_metadata ORDER BY 1"
        ).fetchall():
            found[f"large object {oid}"] = (
                digest,
                comment,
                owner if scope.owners else None,
                acl if scope.grants else None,
            )
        properties = conn.execute(
            "SELECT to_jsonb(d), shobj_description(d.oid, 'pg_database'), t.spcname "
            "FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
            "WHERE datname = current_database()"
        ).fetchone()
        assert properties is not None
        columns, comment, tablespace = properties
        dropped = _DATABASE_NOISE | ({"datdba"} if not scope.owners else set())
        dropped |= set() if scope.database_grants else {"datacl"}
        found["database"] = {k: v for k, v in columns.items() if k not in dropped}
        found["database comment"] = comment
        found["database tablespace"] = tablespace
        for role, settings in conn.execute(
            "SELECT coalesce(pg_get_userbyid(nullif(setrole, 0)), ''), "
            " array(SELECT unnest(setconfig) ORDER BY 1) FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()"
        ).fetchall():
            if role == "" or scope.role_database_settings:
                found[f"database settings for role {role!r}" if role else "database settings"] = settings
    return found


def differences(reference: dict[str, Any], copy: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, each line readable in an assertion message."""
    found = []
    for key in sorted(reference.keys() | copy.keys()):
        mine, theirs = reference.get(key), copy.get(key)
        if key == "schema":
            for entry in sorted((mine - theirs).keys()):
                found.append(f"schema entry only in the reference: {entry}")
            for entry in sorted((theirs - mine).keys()):
                found.append(f"schema entry only in the copy: {entry}")
        elif mine != theirs:
            found.append(f"{key}: reference {mine!r}, copy {theirs!r}")
    return found
