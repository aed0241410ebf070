"""Indexes and constraints: each table's own built as soon as its data is in, the rest at the end.

The post-data archive is split by its table of contents: a table's indexes and its
primary key / unique constraints depend only on that table, so they are restored
while other tables are still copying (index builds overlap the copy instead of
waiting for the slowest table). Foreign keys, triggers, rules, partition index
attachments and everything else are restored once all tables are done.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg

from worker.engines.pg.catalog import Table
from worker.engines.pg.events import Emitter
from worker.engines.pg.tools import run_pipeline

PG_CLASS = 1259
PG_CONSTRAINT = 2606
_TOC_ENTRY = re.compile(r"^\s*\d+;\s+(?P<classid>\d+)\s+(?P<objid>\d+)\s+(?P<desc>.*)$")


class PostData:
    def __init__(
        self,
        archive: Path,
        restore: list[str],
        env: dict[str, str],
        workers: int,
        emit: Emitter,
    ) -> None:
        self.archive = archive
        self.restore = restore
        self.env = env
        self.workers = max(1, workers)
        self.emit = emit
        self.early: dict[int, list[str]] = {}
        self.final: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="index")
        self._futures: list[Future[None]] = []

    def plan(self, source: psycopg.Connection, early: set[Table]) -> None:
        """Sort the archive's entries: those of a table in `early` go with it, the rest at the end."""
        listing = subprocess.run(
            [self.restore[0], "-l", str(self.archive)],
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
        for line in listing.splitlines():
            match = _TOC_ENTRY.match(line)
            if match is None:
                continue
            classid, objid, desc = int(match["classid"]), int(match["objid"]), match["desc"]
            own = (
                classid == PG_CLASS and desc.startswith("INDEX ") and not desc.startswith("INDEX ATTACH")
            ) or (classid == PG_CONSTRAINT and desc.startswith("CONSTRAINT "))
            table = owner.get(objid) if own else None
            if table is not None and table in copied:
                self.early.setdefault(table, []).append(line)
            else:
                self.final.append(line)

    def _restore(self, lines: list[str], name: str, jobs: int) -> None:
        listfile = self.archive.with_name(f"{name}.list")
        listfile.write_text("\n".join(lines) + "\n")
        argv = [*self.restore, f"--jobs={jobs}", "-L", str(listfile), str(self.archive)]
        run_pipeline([(argv, self.env)], f"indexes and constraints ({name})", self.emit)

    def table_done(self, table: Table) -> None:
        lines = self.early.pop(table.oid, [])
        if lines:
            self._futures.append(self._pool.submit(self._restore, lines, f"table-{table.oid}", 1))

    def finish(self) -> None:
        """Wait for the per-table builds (raising the first failure), then restore the rest."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(cancel_futures=True)
        leftovers = [line for lines in self.early.values() for line in lines]
        if self.final or leftovers:
            self._restore(leftovers + self.final, "rest", self.workers)

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
