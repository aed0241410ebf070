"""Indexes and constraints: a table's own built as soon as its data is in, the rest at the end.

The post-data archive is split by its table of contents: a table's indexes and its
primary key / unique constraints depend only on that table, so they are restored
while other tables are still copying (index builds overlap the copy instead of
waiting for the slowest table). Foreign keys, triggers, rules, partition index
attachments and everything else are restored once all tables are done.

A table's indexes are built in parallel. A primary key or unique constraint would hold an
exclusive lock on its table for the whole build and make the others wait, so where
PostgreSQL allows it (a plain unique index in the default tablespace) its index is built
like the others, `CREATE UNIQUE INDEX`, and then becomes the constraint with
`ADD CONSTRAINT ... USING INDEX`, which takes a moment.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from worker.engines.pg.catalog import Table
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import run_pipeline

_KEY_CONSTRAINTS = """
SELECT c.oid::int8, c.conrelid::int8, n.nspname, r.relname, c.conname, c.contype::text,
       c.condeferrable, c.condeferred, pg_get_indexdef(c.conindid), x.indisreplident, x.indisclustered
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
JOIN pg_class i ON i.oid = c.conindid JOIN pg_index x ON x.indexrelid = c.conindid
WHERE c.contype IN ('p', 'u') AND r.relkind = 'r' AND c.conparentid = 0
  AND x.indexprs IS NULL AND x.indpred IS NULL AND i.reltablespace = 0
"""
PG_CLASS = 1259
PG_CONSTRAINT = 2606
_TOC_ENTRY = re.compile(r"^\s*\d+;\s+(?P<classid>\d+)\s+(?P<objid>\d+)\s+(?P<desc>.*)$")


@dataclass(frozen=True)
class KeyConstraint:
    """A primary key or unique constraint, built as a unique index first."""

    create_index: str  # pg_get_indexdef, schema-qualified
    # ADD CONSTRAINT ... USING INDEX, then what else pg_dump's entry for the constraint sets
    # (REPLICA IDENTITY USING INDEX, CLUSTER ON), in one transaction.
    attach: sql.Composed


def _key_constraints(source: psycopg.Connection) -> dict[int, tuple[int, KeyConstraint]]:
    """Constraint OID -> (its table's OID, how to build it), for those USING INDEX can attach."""
    source.execute("SET search_path = ''")  # pg_get_indexdef then qualifies every name
    keys = {}
    for row in source.execute(_KEY_CONSTRAINTS):
        oid, table, schema, name, conname, contype, deferrable, deferred, indexdef, replident, clustered = row
        relation, index = sql.Identifier(schema, name), sql.Identifier(conname)
        statements = [
            sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
                relation,
                index,
                sql.SQL("PRIMARY KEY" if contype == "p" else "UNIQUE"),
                index,
                sql.SQL((" DEFERRABLE" if deferrable else "") + (" INITIALLY DEFERRED" if deferred else "")),
            )
        ]
        if replident:
            statements.append(
                sql.SQL("ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {}").format(relation, index)
            )
        if clustered:
            statements.append(sql.SQL("ALTER TABLE ONLY {} CLUSTER ON {}").format(relation, index))
        keys[int(oid)] = (int(table), KeyConstraint(indexdef, sql.SQL("; ").join(statements)))
    return keys


class PostData:
    def __init__(
        self,
        archive: Path,
        restore: list[str],
        env: dict[str, str],
        workers: int,
        emit: Emitter,
        after_table: Callable[[Table], None],
        connect_target: Callable[[], psycopg.Connection],
    ) -> None:
        self.archive = archive
        self.restore = restore
        self.env = env
        self.workers = max(1, workers)
        self.emit = emit
        self.after_table = after_table
        self.connect_target = connect_target
        self.early: dict[int, list[str]] = {}
        self.keys: dict[int, list[KeyConstraint]] = {}
        self.final: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="index")
        self._futures: list[Future[None]] = []

    def plan(self, source: psycopg.Connection, early: set[Table]) -> None:
        """Sort the archive's entries: those of a table in `early` go with it, the rest at the end."""
        listing = subprocess.run(
            [self.restore[0], "-l", "--section=post-data", str(self.archive)],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout
        copied = {t.oid for t in early}
        owner: dict[int, int] = {
            int(r[0]): int(r[1])
            for r in source.execute("SELECT indexrelid::int8, indrelid::int8 FROM pg_index")
        }
        owner.update(
            (int(r[0]), int(r[1]))
            for r in source.execute(
                "SELECT oid::int8, conrelid::int8 FROM pg_constraint WHERE contype IN ('p', 'u')"
            )
        )
        keys = _key_constraints(source)
        for line in listing.splitlines():
            match = _TOC_ENTRY.match(line)
            if match is None:
                continue
            classid, objid, desc = int(match["classid"]), int(match["objid"]), match["desc"]
            is_constraint = classid == PG_CONSTRAINT and desc.startswith("CONSTRAINT ")
            own = (
                classid == PG_CLASS and desc.startswith("INDEX ") and not desc.startswith("INDEX ATTACH")
            ) or is_constraint
            table = owner.get(objid) if own else None
            if table is None or table not in copied:
                self.final.append(line)
            elif is_constraint and objid in keys:
                self.keys.setdefault(table, []).append(keys[objid][1])
            else:
                self.early.setdefault(table, []).append(line)

    def _restore(self, lines: list[str], name: str, jobs: int) -> None:
        if not lines:
            return
        listfile = self.archive.with_name(f"{name}.list")
        listfile.write_text("\n".join(lines) + "\n")
        argv = [*self.restore, f"--jobs={jobs}", "-L", str(listfile), str(self.archive)]
        run_pipeline([(argv, self.env)], f"indexes and constraints ({name})", self.emit)

    def table_done(self, table: Table) -> None:
        """Build `table`'s own indexes and keys now (in parallel with each other), then `after_table`."""
        lines = self.early.pop(table.oid, [])
        keys = self.keys.pop(table.oid, [])
        if lines or keys:
            self._futures.append(self._pool.submit(self._build, table, lines, keys))

    def _build(self, table: Table, lines: list[str], keys: list[KeyConstraint]) -> None:
        with ThreadPoolExecutor(max_workers=1 + len(keys), thread_name_prefix="key") as builds:
            indexes = builds.submit(self._restore, lines, f"table-{table.oid}", min(len(lines), self.workers))
            unique = [builds.submit(self._build_key_index, key) for key in keys]
            for future in [indexes, *unique]:
                future.result()
        if keys:
            with self.connect_target() as conn:
                for key in keys:
                    conn.execute(key.attach)
        self.after_table(table)

    def _build_key_index(self, key: KeyConstraint) -> None:
        with self.connect_target() as conn:
            conn.execute(key.create_index)

    def finish(self) -> None:
        """Wait for the per-table builds (raising the first failure), then restore the rest."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(cancel_futures=True)
        # Tables whose copy never reported done (none on success) get theirs here, keys first:
        # foreign keys in the rest need them.
        for keys in self.keys.values():
            for key in keys:
                self._build_key_index(key)
                with self.connect_target() as conn:
                    conn.execute(key.attach)
        leftovers = [line for lines in self.early.values() for line in lines]
        self._restore(leftovers + self.final, "rest", self.workers)

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
