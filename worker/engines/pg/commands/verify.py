"""verify: compare, per database, everything init copies, and list what differs.

- schema: the same normalized `pg_dump --schema-only` of both sides, as sorted statements;
- rows of every table: count and an order-independent checksum of each row's text
  (`ROW(t.*)`, so a column named `t` is not mistaken for the row), read with
  `row_security = off` so a policy cannot hide rows from the comparison;
- sequences (`last_value`, `is_called`), materialized views (populated, rows),
  large objects (content), database properties (encoding, locale, settings, comment).

The job's error names the first three differences of each kind; the log has them all.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from jobs.urls import ConnectionUrl
from worker.engines.pg import properties
from worker.engines.pg.context import Context
from worker.engines.pg.tools import (
    EngineError,
    Tools,
    connect,
    find_tools,
    quote_pattern,
    server_major,
    tool_env,
)

SHOWN_PER_KIND = 3
SHOWN_ITEM_LENGTH = 120

_CHECKSUM = (
    "SELECT count(*), "
    "coalesce(sum(('x' || left(md5(ROW(t.*)::text), 16))::bit(64)::bigint::numeric), 0)::text FROM {} AS t"
)
_MATVIEWS = """
SELECT n.nspname, c.relname, c.relispopulated FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""
_SEQUENCES = "SELECT schemaname, sequencename FROM pg_sequences ORDER BY 1, 2"
_LARGE_OBJECTS = "SELECT oid::int8, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"
# Lines of a plain dump that differ between two equal databases (headers, session settings).
_NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config\(.*|\\.*|)$")


@dataclass
class Differences:
    kinds: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, item: str) -> None:
        self.kinds.setdefault(kind, []).append(item)

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.kinds.values())

    def summary(self) -> str:
        parts = []
        for kind, items in self.kinds.items():
            more = f" (and {len(items) - SHOWN_PER_KIND} more)" if len(items) > SHOWN_PER_KIND else ""
            shown = "; ".join(item[:SHOWN_ITEM_LENGTH] for item in items[:SHOWN_PER_KIND])
            parts.append(f"{kind}: {shown}{more}")
        return " | ".join(parts)


def _session(url: ConnectionUrl, database: str) -> psycopg.Connection:
    conn = connect(url, database)
    conn.execute("SET row_security = off")
    return conn


def _checksum(url: ConnectionUrl, database: str, relation: sql.Identifier) -> tuple[int, str] | None:
    try:
        with _session(url, database) as conn:
            row = conn.execute(sql.SQL(_CHECKSUM).format(relation)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise EngineError(f"verify cannot read every row of {database}: {str(exc).strip()}") from exc
    assert row is not None
    return int(row[0]), str(row[1])


def _statements(dump: str) -> Counter[str]:
    lines = [line for line in dump.splitlines() if not _NOISE.match(line.strip())]
    return Counter(" ".join(s.split()) for s in "\n".join(lines).split(";\n") if s.strip())


def _schema_dump(tools: Tools, url: ConnectionUrl, database: str, filters: list[str]) -> str:
    argv = [
        tools.path("pg_dump"),
        "--schema-only",
        "--no-owner",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        *filters,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env=tool_env(url, database), check=False)
    if done.returncode:
        raise EngineError(f"pg_dump --schema-only of {database} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


class DatabaseVerify:
    def __init__(self, ctx: Context, tools: Tools | None, database: str, found: Differences) -> None:
        self.ctx = ctx
        self.tools = tools
        self.database = database
        self.found = found
        self.chosen, self.excluded = ctx.tables(database)
        self.filtered = ctx.has_include_rules(database)

    def run(self) -> int:
        self.compare_properties()
        self.compare_schema()
        checked = self.compare_rows()
        self.compare_sequences()
        self.compare_matviews()
        self.compare_large_objects()
        return checked

    def _label(self, *parts: str) -> str:
        return ".".join((self.database, *parts))

    def compare_properties(self) -> None:
        with connect(self.ctx.source) as src, connect(self.ctx.target) as tgt:
            if not tgt.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone():
                self.found.add("databases", f"{self.database} missing on target")
                raise _MissingDatabase
            mine, theirs = properties.read(src, self.database), properties.read(tgt, self.database)
        for difference in mine.differences(theirs):
            self.found.add("database properties", f"{self.database} {difference}")

    def compare_schema(self) -> None:
        if self.tools is None:
            return
        if self.filtered:
            filters = [arg for t in self.chosen for arg in ("-t", quote_pattern(t.schema, t.name))]
        else:
            filters = [arg for t in self.excluded for arg in ("-T", quote_pattern(t.schema, t.name))]
        source = _statements(_schema_dump(self.tools, self.ctx.source, self.database, filters))
        target = _statements(_schema_dump(self.tools, self.ctx.target, self.database, filters))
        for statement in sorted((source - target).elements()):
            self.found.add("schema", f"{self.database} target lacks: {statement[:160]}")
        for statement in sorted((target - source).elements()):
            self.found.add("schema", f"{self.database} target has extra: {statement[:160]}")

    def compare_rows(self) -> int:
        leaves = [t for t in self.chosen if t.kind == "r"]
        self.ctx.emit.progress(current_database=self.database, tables_total=len(leaves), tables_completed=0)
        sides = self._both_sides([t.ident for t in leaves])
        for table, (left, right) in zip(leaves, sides, strict=True):
            self._compare_relation("rows", self._label(table.schema, table.name), left, right)
        self.ctx.emit.progress(tables_completed=len(leaves))
        return len(leaves)

    def compare_matviews(self) -> None:
        with _session(self.ctx.source, self.database) as src, _session(self.ctx.target, self.database) as dst:
            mine = {(r[0], r[1]): r[2] for r in src.execute(_MATVIEWS)}
            theirs = {(r[0], r[1]): r[2] for r in dst.execute(_MATVIEWS)}
        if self.filtered:
            return  # pg_dump -t copies no materialized view
        populated = [key for key in mine if mine[key] and theirs.get(key)]
        for key in mine:
            if key not in theirs:
                self.found.add("materialized views", f"{self._label(*key)} missing on target")
            elif mine[key] != theirs[key]:
                state = "populated" if mine[key] else "not populated"
                self.found.add("materialized views", f"{self._label(*key)} is {state} on the source only")
        sides = self._both_sides([sql.Identifier(*key) for key in populated])
        for key, (left, right) in zip(populated, sides, strict=True):
            self._compare_relation("materialized views", self._label(*key), left, right)

    def compare_sequences(self) -> None:
        with _session(self.ctx.source, self.database) as src, _session(self.ctx.target, self.database) as dst:
            present = {(r[0], r[1]) for r in dst.execute(_SEQUENCES)}
            for schema, name in src.execute(_SEQUENCES).fetchall():
                label = self._label(schema, name)
                if (schema, name) not in present:
                    if not self.filtered:
                        self.found.add("sequences", f"{label} missing on target")
                    continue
                query = sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
                mine, theirs = src.execute(query).fetchone(), dst.execute(query).fetchone()
                if mine != theirs:
                    self.found.add("sequences", f"{label} {mine} vs {theirs}")

    def compare_large_objects(self) -> None:
        if self.filtered:
            return  # large objects are copied only with their whole database
        with _session(self.ctx.source, self.database) as src, _session(self.ctx.target, self.database) as dst:
            mine: dict[int, str] = dict(src.execute(_LARGE_OBJECTS).fetchall())
            theirs: dict[int, str] = dict(dst.execute(_LARGE_OBJECTS).fetchall())
        for oid in sorted(mine.keys() | theirs.keys()):
            if oid not in theirs:
                self.found.add("large objects", f"{self.database} {oid} missing on target")
            elif oid not in mine:
                self.found.add("large objects", f"{self.database} {oid} only on target")
            elif mine[oid] != theirs[oid]:
                self.found.add("large objects", f"{self.database} {oid} content differs")

    def _both_sides(
        self, relations: list[sql.Identifier]
    ) -> list[tuple[tuple[int, str] | None, tuple[int, str] | None]]:
        def both(relation: sql.Identifier) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
            return (
                _checksum(self.ctx.source, self.database, relation),
                _checksum(self.ctx.target, self.database, relation),
            )

        with ThreadPoolExecutor(max_workers=max(1, self.ctx.workers)) as pool:
            return list(pool.map(both, relations))

    def _compare_relation(
        self, kind: str, label: str, left: tuple[int, str] | None, right: tuple[int, str] | None
    ) -> None:
        if right is None:
            self.found.add(kind, f"{label} missing on target")
        elif left is not None and left[0] != right[0]:
            self.found.add(kind, f"{label} rows {left[0]} vs {right[0]}")
        elif left != right:
            self.found.add(kind, f"{label} content differs")


class _MissingDatabase(Exception):
    """Nothing more to compare in a database the target does not have."""


def verify(ctx: Context) -> None:
    with connect(ctx.source) as src, connect(ctx.target) as tgt:
        databases = ctx.selected_databases(src)
        source_major, target_major = server_major(src), server_major(tgt)
    try:
        tools: Tools | None = find_tools(max(source_major, target_major))
    except EngineError as exc:
        tools = None
        ctx.emit.warn(f"schemas not compared: {exc}")
    ctx.emit.progress(phase="verify", databases_total=len(databases), message="verifying")
    found = Differences()
    checked = 0
    for index, database in enumerate(databases):
        with contextlib.suppress(_MissingDatabase):
            checked += DatabaseVerify(ctx, tools, database, found).run()
        ctx.emit.progress(databases_completed=index + 1, message=f"verified {database}")
    if found.count:
        for kind, items in found.kinds.items():
            for item in items:
                # Warnings: the job's error is the summary line below, one per kind.
                ctx.emit.warn(f"mismatch ({kind}): {item}")
        raise EngineError(f"verify found {found.count} differences: {found.summary()}"[:900])
    message = f"verify passed: {checked} tables in {len(databases)} databases match"
    ctx.emit.progress(phase="done", current_database=None, percent=100.0, message=message)
    ctx.emit.info(message)
