"""verify: compare, per database, everything init copies, and list what differs.

- schema: `pg_dump --schema-only` of both sides (grants too with copy_roles), as sorted
  statements, leaving out only what pg_dump prints differently for equal databases;
- rows of every table: count and an order-independent checksum of each row's text
  (`ROW(t.*)`, so a column named `t` is not mistaken for the row), read with
  `row_security = off` so a policy cannot hide rows from the comparison;
- sequences (`last_value`, `is_called`), materialized views (populated, rows),
  large objects (content, comment; with copy_roles grants and owner), database properties
  (encoding, locale, settings, comment).

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
SHOWN_ITEM_LENGTH = 160

_CHECKSUM = (
    "SELECT count(*), "
    "coalesce(sum(('x' || left(md5(ROW(t.*)::text), 16))::bit(64)::bigint::numeric), 0)::text FROM {} AS t"
)
_MATVIEWS = """
SELECT n.nspname, c.relname, c.relispopulated FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""
_SEQUENCES = "SELECT schemaname, sequencename FROM pg_sequences ORDER BY 1, 2"
# Each large object: content, comment, whether the copying user owns it (the copy's
# `--no-owner`), and its grants with its owner written as "=owner" (the owner differs).
_LARGE_OBJECTS = """
SELECT m.oid::int8, md5(lo_get(m.oid)), obj_description(m.oid, 'pg_largeobject'),
    m.lomowner = current_user::regrole,
    array(SELECT concat_ws(' ',
                           CASE a.grantor WHEN m.lomowner THEN '=owner' ELSE a.grantor::regrole::text END,
                           CASE a.grantee WHEN m.lomowner THEN '=owner' WHEN 0 THEN 'PUBLIC'
                                ELSE a.grantee::regrole::text END,
                           a.privilege_type, CASE WHEN a.is_grantable THEN 'WITH GRANT OPTION' END)
          FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a ORDER BY 1)
FROM pg_largeobject_metadata m ORDER BY 1
"""
# What a plain dump holds outside statements and literals: string literals (E'' with
# backslash escapes), quoted identifiers, dollar quotes (opened here, closed by the same
# tag), comments, psql meta-commands (`\connect`, `\restrict KEY`) and statement ends.
_TOKEN = re.compile(
    r"""(?P<literal>(?<![\w$])[Ee]'[^'\\]*(?:(?:''|\\.)[^'\\]*)*'|'[^']*(?:''[^']*)*'|"[^"]*(?:""[^"]*)*")"""
    r"|(?P<dollar>(?<![\w$])\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$)"
    r"|(?P<comment>--[^\n]*)|(?P<meta>^[ \t]*\\[^\n]*)|(?P<end>;)",
    re.MULTILINE | re.DOTALL,
)
# The comment pg_dump heads each entry with: what the entry is, and its tablespace (not
# in its statements).
_ENTRY = re.compile(
    r"^-- (?:Data for )?Name: (?P<name>.*); Type: (?P<type>.*); Schema: (?P<schema>.*); Owner: [^;]*"
    r"(?:; Tablespace: (?P<space>.*))?$"
)
# Session settings pg_dump prints at the top level, the same for two equal databases.
# Two of them are a table's properties: its tablespace (also in the entry's head) and its
# access method (selected before the tables and materialized views that use it).
_SESSION = re.compile(r"^(?:SET |SELECT pg_catalog\.set_config\()")
_ACCESS_METHOD = re.compile(r"^SET default_table_access_method = (.*)$")
_WITH_STORAGE = re.compile(r"^CREATE (?:UNLOGGED )?(?:TABLE|MATERIALIZED VIEW) ")


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
    """The statements of a plain dump as written, each as "its entry\nthe statement" and
    with its entry's tablespace and table access method.

    Dropped: what pg_dump prints differently for two equal databases (its comments,
    meta-commands, session settings), and only at the top level: a function body or a
    string literal is kept whole, whatever its lines start with.
    """
    found: Counter[str] = Counter()
    parts: list[str] = []
    entry, space, method = "", "", "heap"
    pos = 0
    while True:
        token = _TOKEN.search(dump, pos)
        if token is None:
            break
        parts.append(dump[pos : token.start()])
        pos = token.end()
        kind = token.lastgroup
        if kind == "dollar":
            close = dump.find(token.group(), pos)
            pos = len(dump) if close < 0 else close + len(token.group())
            parts.append(dump[token.start() : pos])
        elif kind == "literal":
            parts.append(token.group())
        elif kind == "comment":
            head = _ENTRY.match(token.group())
            if head:
                schema = "" if head["schema"] == "-" else f"{head['schema']}."
                entry = f"{head['type']} {schema}{head['name']}"
                space = head["space"] or ""
        elif kind == "end":
            statement = "".join(parts).strip()
            parts = []
            chosen = _ACCESS_METHOD.match(statement)
            if chosen:
                method = chosen[1]
            if not statement or _SESSION.match(statement):
                continue
            if method != "heap" and _WITH_STORAGE.match(statement):
                statement += f" -- using {method}"
            where = f" -- in tablespace {space}" if space else ""
            found[f"{entry}\n{statement};{where}"] += 1
    rest = "".join(parts).strip() + dump[pos:].strip()
    if rest:
        found[f"{entry}\n{rest}"] += 1
    return found


def _shown(text: str, length: int = 160) -> str:
    """Text on one line, for a message: line breaks and indents only are folded."""
    return re.sub(r"[ \t]*\n\s*", " ", text)[:length]


def _schema_differences(lacking: Counter[str], extra: Counter[str]) -> list[str]:
    """One item per statement differing (as `_statements` gives them); a statement changed
    (one of the same dump entry on both sides) is one item showing where it changes, which
    a long function body would otherwise hide."""
    unmatched = [key.split("\n", 1) for key in sorted(extra.elements())]
    found = []
    for entry, statement in (key.split("\n", 1) for key in sorted(lacking.elements())):
        changed = next((other for other in unmatched if other[0] == entry), None)
        if changed is None:
            found.append(f"target lacks: {_shown(statement)}")
            continue
        unmatched.remove(changed)
        pairs = enumerate(zip(statement, changed[1], strict=False))
        at = next((i for i, (mine, theirs) in pairs if mine != theirs), len(statement))
        start = max(0, statement.rfind("\n", 0, at) + 1, at - 12)
        source_part, target_part = _shown(statement[start:], 32), _shown(changed[1][start:], 32)
        found.append(f'{entry[:50]} differs: source "{source_part}" vs target "{target_part}"')
    found += [f"target has extra: {_shown(statement)}" for _, statement in unmatched]
    return found


def _schema_dump(tools: Tools, url: ConnectionUrl, database: str, filters: list[str], acl: bool) -> str:
    argv = [
        tools.path("pg_dump"),
        "--schema-only",
        "--no-owner",
        *([] if acl else ["--no-acl"]),
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
        # Grants are copied only with copy_roles, so only then compared.
        acl = self.ctx.options.copy_roles
        source = _statements(_schema_dump(self.tools, self.ctx.source, self.database, filters, acl))
        target = _statements(_schema_dump(self.tools, self.ctx.target, self.database, filters, acl))
        for item in _schema_differences(source - target, target - source):
            self.found.add("schema", f"{self.database} {item}")

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
            mine = {row[0]: row[1:] for row in src.execute(_LARGE_OBJECTS)}
            theirs = {row[0]: row[1:] for row in dst.execute(_LARGE_OBJECTS)}
        for oid in sorted(mine.keys() | theirs.keys()):
            label = f"{self.database} {oid}"
            if oid not in theirs:
                self.found.add("large objects", f"{label} missing on target")
                continue
            if oid not in mine:
                self.found.add("large objects", f"{label} only on target")
                continue
            (content, comment, _, grants), (content_there, comment_there, owned_there, grants_there) = (
                mine[oid],
                theirs[oid],
            )
            if content != content_there:
                self.found.add("large objects", f"{label} content differs")
            if comment != comment_there:
                self.found.add("large objects", f"{label} comment {comment!r} vs {comment_there!r}")
            # Ownership and grants are copied only with copy_roles: ownership as the copying
            # user's (--no-owner), grants as on the source.
            if self.ctx.options.copy_roles and not owned_there:
                self.found.add("large objects", f"{label} is not owned by the copying user on the target")
            if self.ctx.options.copy_roles and grants != grants_there:
                self.found.add("large objects", f"{label} grants {grants} vs {grants_there}")

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
