"""An independent judge of a copy, built on PostgreSQL's own tools: what the engine's `verify`
is checked against.

`snapshot(url, database)` reads, for one database: the entries of `pg_dump --schema-only`
(each as printed, only what differs between two equal databases left out), a hash of
every table's and populated materialized view's `COPY (SELECT ... ORDER BY ...) TO STDOUT`,
every sequence's state, every large object's content and comment, and the database's own
properties. Two equal databases have equal snapshots.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections import Counter
from typing import Any

import psycopg
from engine_helpers import database_url
from psycopg import sql

from local_cloud.postgres import LocalPostgres, bin_dir

# The comment block pg_dump heads each entry with; its owner is "-" under --no-owner.
_ENTRY_HEAD = re.compile(r"^--\n-- (Name: .*; Type: (.*); Schema: .*; Owner: .*)\n--\n", re.MULTILINE)
_DUMP_END = "\n--\n-- PostgreSQL database dump complete\n--\n"
# What pg_dump selects between entries, after a blank line: a tablespace (also in the next
# entry's head) and a table access method (for the tables that follow).
_SELECTED = re.compile(r"\n\nSET (default_tablespace|default_table_access_method) = (.*);\n*\Z")


def dump_entries(dump: str) -> Counter[str]:
    """Each entry of a plain dump: its head and its text exactly as printed (bodies and
    literals whole). Left out: what two equal databases' dumps differ in, the preamble (the
    tool's version, `\\restrict` key, session settings) and the closing lines."""
    dump = dump.split(_DUMP_END, 1)[0]
    heads = list(_ENTRY_HEAD.finditer(dump))
    found: Counter[str] = Counter()
    access_method = "heap"
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        text = dump[head.end() : following.start() if following else len(dump)]
        selected = []
        while chosen := _SELECTED.search(text):
            selected.append(chosen.groups())
            text = text[: chosen.start()]
        entry = f"{head[1]}\n{text.strip()}"
        if head[2] in ("TABLE", "MATERIALIZED VIEW"):
            entry += f"\n(access method {access_method})"
        found[entry] += 1
        for setting, value in reversed(selected):
            if setting == "default_table_access_method":
                access_method = value
    return found


def schema_statements(server: LocalPostgres, database: str) -> Counter[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
        "PGPASSWORD": server.password,
    }
    argv = [
        str(bin_dir() / "pg_dump"),
        "--schema-only",
        "--no-owner",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        "-d",
        psycopg.conninfo.make_conninfo(host="127.0.0.1", port=server.port, user=server.user, dbname=database),
    ]
    return dump_entries(subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout)


def _copy_hash(conn: psycopg.Connection, relation: sql.Identifier) -> str:
    digest = hashlib.sha256()
    query = sql.SQL('COPY (SELECT * FROM ONLY {} AS t ORDER BY ROW(t.*)::text COLLATE "C") TO STDOUT').format(
        relation
    )
    with conn.cursor().copy(query) as copy:
        for block in copy:
            digest.update(block)
    return digest.hexdigest()


def snapshot(server: LocalPostgres, database: str) -> dict[str, Any]:
    found: dict[str, Any] = {"schema": schema_statements(server, database)}
    with psycopg.connect(database_url(server, database), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3")
        conn.execute("SET row_security = off")
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind::text, c.relispopulated FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 'S') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
            "ORDER BY 1, 2"
        ).fetchall()
        for schema, name, kind, populated in relations:
            ident = sql.Identifier(schema, name)
            if kind == "S":
                state = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
                found[f"sequence {schema}.{name}"] = state
            elif kind == "m" and not populated:
                found[f"matview {schema}.{name}"] = "not populated"
            else:
                found[f"{'matview' if kind == 'm' else 'table'} {schema}.{name}"] = _copy_hash(conn, ident)
        found["large objects"] = conn.execute(
            "SELECT oid::int8, md5(lo_get(oid)), obj_description(oid, 'pg_largeobject') "
            "FROM pg_largeobject_metadata ORDER BY 1"
        ).fetchall()
        found["database"] = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider, datconnlimit, "
            "shobj_description(oid, 'pg_database'), "
            "(SELECT array(SELECT unnest(setconfig) ORDER BY 1) FROM pg_db_role_setting "
            " WHERE setdatabase = d.oid AND setrole = 0) "
            "FROM pg_database d WHERE datname = current_database()"
        ).fetchone()
    return found


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, readable in an assertion message."""
    found = []
    for key in sorted(left.keys() | right.keys()):
        mine, theirs = left.get(key), right.get(key)
        if key == "schema" and mine != theirs:
            found += [f"schema only on the left: {s[:200]}" for s in (mine - theirs)]
            found += [f"schema only on the right: {s[:200]}" for s in (theirs - mine)]
        elif mine != theirs:
            found.append(f"{key}: {mine!r} vs {theirs!r}")
    return found
