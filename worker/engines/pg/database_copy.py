"""One database's copy, as named steps run in order by `DatabaseCopy.run`.

snapshot -> schemas -> pre_data -> plan_copy -> plan_post_data -> copy_data -> large_objects
-> post_data -> analyze -> sequences -> database properties. Every read uses the snapshot
taken first (with sync, the replication slot's own), so tables, large objects and indexes
are one consistent point in time; sequences are read last (they are not transactional).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql

from worker.engines.pg import properties
from worker.engines.pg.analyze import Analyzer
from worker.engines.pg.catalog import Table
from worker.engines.pg.context import Context
from worker.engines.pg.copy import CopyPart, copy_tables, plan_parts
from worker.engines.pg.locks import lock_tables, lock_timeout_seconds
from worker.engines.pg.postdata import PostData
from worker.engines.pg.replication import ensure_publication, replication_name, wait_and_drop_slot
from worker.engines.pg.tools import (
    EngineError,
    Tools,
    connect,
    quote_pattern,
    replication_connection,
    run_pipeline,
    tool_env,
)

# Sequences read by one query (a UNION ALL of this many).
SEQUENCE_BATCH = 500


class DatabaseCopy:
    def __init__(
        self,
        ctx: Context,
        tools: Tools,
        database: str,
        *,
        with_sync: bool,
        binary: bool,
    ) -> None:
        self.ctx = ctx
        self.emit = ctx.emit
        self.tools = tools
        self.database = database
        self.with_sync = with_sync
        self.binary = binary
        self.chosen, self.excluded = ctx.tables(database)
        self.source_env = tool_env(ctx.source, database)
        self.target_env = tool_env(ctx.target, database)
        self.snapshot = ""
        self._holder: psycopg.Connection | None = None  # with sync: the slot's walsender session
        self._reader: psycopg.Connection | None = None
        self._post: PostData | None = None
        self._parts: list[CopyPart] = []
        self._schema = Path()
        self._analyzer = Analyzer(ctx.target, database, ctx.workers)

    @property
    def leaves(self) -> list[Table]:
        """Tables that hold rows (a partitioned parent holds none of its own)."""
        return [t for t in self.chosen if t.kind == "r"]

    def run(self) -> None:
        emit = self.emit
        emit.progress(
            phase="schema",
            current_database=self.database,
            tables_completed=0,
            tables_total=len(self.leaves),
            message=f"creating schema of {self.database}",
        )
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="pg-engine-") as tmp:
            self.take_snapshot()
            stack.callback(self.release_snapshot)
            stack.callback(self._analyzer.close)
            self.create_schemas()
            self.dump_schema(Path(tmp) / "schema.dump")
            self.restore_pre_data()
            self.plan_copy()
            self.plan_post_data()
            self.copy_data()
            large_objects = self.copy_large_objects()
            self.release_snapshot()
            self.restore_post_data()
            self.analyze()
        sequences = self.copy_sequences()
        self.copy_database_properties()
        emit.info(
            f"database {self.database}: {len(self.chosen)} tables, {sequences} sequences, "
            f"{large_objects} large objects copied"
        )

    # ---- steps ----------------------------------------------------------------------

    def take_snapshot(self) -> None:
        """Lock every table the copy reads and export the snapshot every later read uses.

        Both are held by one session (`self._reader`) until the data is copied, so a
        TRUNCATE or table rewrite waits for the copy instead of emptying its table in the
        snapshot. Without sync the locks come first: nothing can change in between. With
        sync the snapshot is the replication slot's, taken first: a transaction holding a
        table's lock could make the slot wait for it while it waits for ours, so a table
        rewritten between the slot and the locks fails the copy instead.
        """
        reader = connect(self.ctx.source, self.database, autocommit=False)
        self._reader = reader
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if not self.with_sync:
            lock_tables(reader, self.chosen, self.database)
            self.snapshot = str(reader.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        else:
            self._create_slot()
            reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
            lock_tables(reader, self.chosen, self.database)
            self._refuse_rewritten(reader)
        # Rows a row-level security policy hides must fail the copy, not vanish from it.
        reader.execute("SET LOCAL row_security = off")

    def _create_slot(self) -> None:
        name = replication_name(self.database, self.ctx.target)
        with connect(self.ctx.source, self.database) as src:
            ensure_publication(src, name, self.chosen)
            wait_and_drop_slot(src, name)
        # The slot's exported snapshot is the copy's point in time: sync resumes exactly after it.
        holder = replication_connection(self.ctx.source, self.database)
        result = holder.pgconn.exec_(
            f"CREATE_REPLICATION_SLOT \"{name}\" LOGICAL pgoutput (SNAPSHOT 'export')".encode()
        )
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            holder.close()
            raise EngineError(f"creating replication slot failed: {result.error_message.decode().strip()}")
        self.snapshot = (result.get_value(0, 2) or b"").decode()
        self._holder = holder

    def _refuse_rewritten(self, reader: psycopg.Connection) -> None:
        """Tables whose file changed since the snapshot (TRUNCATE, a rewrite) read empty in it."""
        rewritten = [
            r[0]
            for r in reader.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = ANY(%s) AND c.relkind = 'r' AND c.relfilenode <> pg_relation_filenode(c.oid) "
                "ORDER BY 1",
                [[t.oid for t in self.chosen]],
            )
        ]
        if rewritten:
            raise EngineError(
                f"{self.database}: {', '.join(rewritten[:5])} truncated or rewritten (TRUNCATE, ALTER TABLE, "
                "VACUUM FULL...) as the copy began, and would read empty; run init again"
            )

    def release_snapshot(self) -> None:
        for conn in (self._reader, self._holder):
            if conn is not None:
                conn.close()
        self._reader = self._holder = None

    def create_schemas(self) -> None:
        """pg_dump -t leaves out the schemas of the tables it dumps: create them first."""
        if not self.ctx.has_include_rules(self.database):
            return
        with connect(self.ctx.target, self.database) as dst:
            for schema in sorted({t.schema for t in self.chosen}):
                dst.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def dump_schema(self, archive: Path) -> None:
        """One pg_dump of both schema sections (not --schema-only, which drops large objects)."""
        dump = [
            *self._dump(),
            "--section=pre-data",
            "--section=post-data",
            "--no-publications",
            "--no-subscriptions",
            "-f",
            str(archive),
        ]
        run_pipeline([(dump, self.source_env)], f"dumping the schema of {self.database}", self.emit)
        self._schema = archive

    def restore_pre_data(self) -> None:
        run_pipeline(
            [([*self._restore(), "--section=pre-data", str(self._schema)], self.target_env)],
            f"schema of {self.database}",
            self.emit,
        )

    def plan_copy(self) -> None:
        """Which tables are copied whole and which in block ranges (in the snapshot)."""
        # In the session holding the locks: sizing a table locks it, and would queue behind a waiting
        # exclusive lock anywhere else.
        assert self._reader is not None
        self._parts = plan_parts(self._reader, self.chosen, self.ctx.split_bytes)
        split = {p.table for p in self._parts if p.is_range}
        for table in split:
            ranges = sum(1 for p in self._parts if p.table == table)
            self.emit.info(f"copying {self.database}.{table.label} as {ranges} block ranges in parallel")

    def plan_post_data(self) -> None:
        """Split indexes and constraints into per-table ones and the rest.

        Tables copied through psql get theirs built as soon as their data is in; small
        tables' go with the rest at the end, in one parallel pg_restore, rather than one
        pg_restore process per table.
        """
        self._post = PostData(
            self._schema,
            self._restore(),
            self.target_env,
            self.ctx.workers,
            self.emit,
            after_table=self._analyzer.analyze,
            connect_target=lambda: connect(self.ctx.target, self.database),
        )
        with connect(self.ctx.source, self.database) as src:
            self._post.plan(src, early={p.table for p in self._parts if not p.in_process})

    def copy_data(self) -> None:
        emit, post = self.emit, self._post
        assert post is not None and self._reader is not None
        emit.progress(phase="copy", message=f"copying {len(self.chosen)} tables of {self.database}")
        total_bytes = sum(t.size for t in self.chosen) or 1
        done_before = emit.state.databases_completed
        databases_total = emit.state.databases_total or 1
        start_bytes = emit.state.bytes_copied

        def on_bytes(count: int) -> None:
            emit.add_bytes(count)
            fraction = min(0.99, (emit.state.bytes_copied - start_bytes) / total_bytes)
            emit.progress(force=False, percent=round(100 * (done_before + fraction) / databases_total, 1))

        def on_table_done(table: Table) -> None:
            post.table_done(table)
            emit.progress(
                tables_completed=emit.state.tables_completed + 1,
                message=f"copied {self.database}.{table.label}",
            )

        try:
            copy_tables(
                self.tools,
                self.ctx.source,
                self.ctx.target,
                self.database,
                self.snapshot,
                self._parts,
                workers=self.ctx.workers,
                binary=self.binary,
                on_bytes=on_bytes,
                on_table_done=on_table_done,
                holder=self._reader,
            )
        except BaseException:
            post.abandon()
            raise

    def restore_post_data(self) -> None:
        assert self._post is not None
        self.emit.progress(phase="indexes", message=f"building indexes and constraints of {self.database}")
        self._post.finish()

    def analyze(self) -> None:
        """Statistics for the tables not analyzed yet (those whose indexes were built early are)."""
        self.emit.progress(phase="analyze", message=f"analyzing the tables of {self.database}")
        started = time.monotonic()
        self._analyzer.analyze_rest(self.chosen)
        after = time.monotonic() - started
        self.emit.info(
            f"database {self.database}: analyzed {len(self._analyzer.analyzed)} tables, "
            f"{self._analyzer.seconds:.1f} s of ANALYZE in all, {after:.1f} s after the rest"
        )

    def copy_large_objects(self) -> int:
        """Their content: pre-data made them (OIDs, comments) empty. pg_dump -t leaves them out."""
        if self.ctx.has_include_rules(self.database):
            return 0
        with connect(self.ctx.source, self.database) as src:
            count = int(src.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0])  # type: ignore[index]
        if count:
            self.emit.progress(phase="copy", message=f"copying {count} large objects of {self.database}")
            # Tables excluded, not just their data: pg_dump locks every table it dumps, and behind
            # an exclusive lock waiting for ours it would wait until the lock timeout.
            dump = [*self._dump(), "--section=data", "--exclude-table=*.*"]
            run_pipeline(
                [(dump, self.source_env), (self._restore(), self.target_env)],
                f"large objects of {self.database}",
                self.emit,
            )
        return count

    def copy_sequences(self) -> int:
        """Each sequence's own last_value and is_called (pg_sequences hides a not-yet-called one).

        One query each side, whatever the number of sequences: a round trip per sequence
        adds up on databases with many tables and on a distant server.
        """
        listing = "SELECT schemaname, sequencename FROM pg_sequences"
        with connect(self.ctx.source, self.database) as src, connect(self.ctx.target, self.database) as dst:
            present = {(r[0], r[1]) for r in dst.execute(listing).fetchall()}
            names = [sql.Identifier(*r) for r in src.execute(listing).fetchall() if (r[0], r[1]) in present]
            states = []
            for start in range(0, len(names), SEQUENCE_BATCH):
                batch = names[start : start + SEQUENCE_BATCH]
                states += src.execute(
                    sql.SQL(" UNION ALL ").join(
                        sql.SQL("(SELECT {}, last_value, is_called FROM {})").format(
                            sql.Literal(name.as_string(src)), name
                        )
                        for name in batch
                    )
                ).fetchall()
            if states:
                dst.execute(
                    "SELECT count(setval(name::regclass, value, called)) "
                    "FROM unnest(%s::text[], %s::int8[], %s::bool[]) AS s(name, value, called)",
                    [[r[0] for r in states], [r[1] for r in states], [r[2] for r in states]],
                )
        return len(states)

    def copy_database_properties(self) -> None:
        """Settings, connection limit and comment: last, so no setting affects the copy itself."""
        with connect(self.ctx.source) as src:
            props = properties.read(src, self.database)
        with connect(self.ctx.target) as tgt:
            properties.apply_settings(tgt, self.database, props)

    # ---- tool command lines ---------------------------------------------------------

    def _dump(self) -> list[str]:
        if self.ctx.has_include_rules(self.database):
            filters = [arg for t in self.chosen for arg in ("-t", quote_pattern(t.schema, t.name))]
        else:
            filters = [arg for t in self.excluded for arg in ("-T", quote_pattern(t.schema, t.name))]
        return [
            self.tools.path("pg_dump"),
            f"--snapshot={self.snapshot}",
            f"--lock-wait-timeout={lock_timeout_seconds()}s",
            "-Fc",
            *filters,
        ]

    def _restore(self) -> list[str]:
        # Grants only with copy_roles: they name roles the target would otherwise lack.
        acl = [] if self.ctx.options.copy_roles else ["--no-acl"]
        return [
            self.tools.path("pg_restore"),
            "--no-owner",
            *acl,
            "--exit-on-error",
            # As a quoted dbname= keyword: pg_restore would read a bare name holding `=` or
            # a URI as a whole connection string (another host, port or password).
            "-d",
            psycopg.conninfo.make_conninfo(dbname=self.database),
        ]
