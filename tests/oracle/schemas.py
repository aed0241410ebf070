"""Hypothesis strategies over a grammar of hostile databases, for the differential check.

A drawn `Database` is a list of SQL statements run one by one on a fresh source database:
tables whose columns were added and dropped after rows went in, inheritance children,
partitions made in place or attached in another order, enums, domains, composite types
and arrays of them, constraints, indexes, replica identities, comments, grants, large
objects, sequences, views, database settings, and row counts on both sides of the engine's
small-table threshold (lowered for the check, see `ENGINE_ENV`).

Known defects of the engine are kept out of the grammar, each where it would be drawn,
with a comment naming it, so that it can be turned on once fixed.
"""

# The grammar writes SQL text from its own fixed names and expressions, nothing external.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

DATABASE = "fuzzed"
# Roles the grants name; the check creates them on the source once.
ROLES = ("oracle_reader", "oracle_writer")
# The engine's thresholds, lowered so that tables over 512 KiB take the large tables' path
# (psql pipes, indexes and constraints built by the engine) and those over 1 MiB are cut
# into block ranges. Tables of SMALL_ROWS or fewer rows stay well under 512 KiB (their
# widest rows, indexes and free space maps included), those of 12000 rows mostly over it.
SMALL_TABLE_KB = 512
ENGINE_ENV = {"PG_ENGINE_SMALL_TABLE_KB": str(SMALL_TABLE_KB), "PG_ENGINE_SPLIT_MB": "1"}
# Row counts: empty, a few, under the lowered threshold, over it, over the split size.
ROW_COUNTS = (0, 3, 200, 12000, 30000)
SMALL_ROWS = 200

TYPES = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'",
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE TYPE pair AS (a int, b text)",
    "COMMENT ON TYPE mood IS 'how it feels; ''quoted''\nsecond line'",
]

# Each column type, with the SQL expressions (of the row number g) its values come from.
VALUES: dict[str, list[str]] = {
    "int": ["g", "CASE WHEN g % 4 = 0 THEN NULL ELSE 2147483647 - g END"],
    "bigint": ["g::bigint * 1000000007", "NULL"],
    "numeric(14,3)": ["g / 7.0", "CASE WHEN g % 5 = 0 THEN 'NaN'::numeric ELSE -g * 1.5 END"],
    "float8": [
        "g / 3.0",
        "(CASE g % 4 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' "
        "ELSE '1e-300' END)::float8",
    ],
    "real": ["g / 7.0"],
    "text": [
        "'t' || g",
        "E'tab\\there\\nline\\\\.\\r' || g",
        "CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('ü東🚀', g % 20) END",
        "E'\\\\.'",
        "'quote''s \"dq\" ' || g",
    ],
    "boolean": ["g % 2 = 0", "NULL"],
    "date": ["DATE '2000-02-29' + g", "'4713-01-01 BC'::date + g", "'infinity'::date"],
    "timestamptz": [
        "TIMESTAMPTZ '2024-03-31 01:30:00+00' + g * interval '37 minutes'",
        "'-infinity'::timestamptz",
    ],
    "interval": ["g * interval '1 day 3 hours 0.5 seconds'", "make_interval(months => g)"],
    "bytea": ["decode(md5(g::text), 'hex')", "'\\x00ff5c'::bytea"],
    "jsonb": ["jsonb_build_object('n', g, 's', E'a\"b\\\\c', 'f', g / 3.0)"],
    "int[]": ["ARRAY[g, NULL, -g]", "'{}'::int[]", "'[0:1]={1,2}'::int[]"],
    "text[]": ["ARRAY['a b', NULL, E'q\"\\\\' || g]"],
    "mood": ["(ARRAY['sad', 'meh', 'ok', 'happy'])[1 + g % 4]::mood"],
    "mood[]": ["ARRAY[(ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood, 'meh']"],
    "posint": ["1 + g"],
    "pair": ["ROW(g, 'p,(' || g)::pair"],
    "pair[]": ["ARRAY[ROW(g, 'x')::pair, NULL]"],
    "int4range": ["int4range(g, g + 10)", "'empty'::int4range"],
    "inet": ["('10.0.' || (g % 256) || '.1/24')::inet"],
    "uuid": ["md5(g::text)::uuid"],
    "tsvector": ["to_tsvector('simple', 'w' || g || ' other')"],
    "regtype": ["'mood'::regtype", "'int4'::regtype"],
    "regclass": ["'pg_class'::regclass"],
}

DATABASE_SETTINGS = [
    "DateStyle = 'SQL, DMY'",
    "extra_float_digits = -15",
    "TimeZone = 'Pacific/Chatham'",
    "IntervalStyle = 'sql_standard'",
    "bytea_output = 'escape'",
    "search_path = nowhere",
    "standard_conforming_strings = off",
    "work_mem = '5MB'",
    "default_toast_compression = 'pglz'",
    "default_transaction_isolation = 'serializable'",
    "client_encoding = 'LATIN1'",
    "lc_messages = 'C'",
    "statement_timeout = '60s'",
    "session_replication_role = replica",
]

COMMENTS = ["plain", "it''s; -- not a comment\nSET x = y;\n\\. end", "ünïcødé 東京"]


@dataclass
class Database:
    statements: list[str] = field(default_factory=list)
    copy_roles: bool = False

    def __str__(self) -> str:
        return f"copy_roles={self.copy_roles}\n" + ";\n".join(self.statements) + ";"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@st.composite
def columns(draw: st.DrawFn, prefix: str, count: tuple[int, int] = (1, 5)) -> list[tuple[str, str, str]]:
    """(name, type, value expression) for each column."""
    drawn = []
    for i in range(draw(st.integers(*count))):
        kind = draw(st.sampled_from(sorted(VALUES)))
        drawn.append((f"{prefix}{i}", kind, draw(st.sampled_from(VALUES[kind]))))
    return drawn


def insert(table: str, cols: list[tuple[str, str, str]], rows: int, first: int = 1) -> str:
    names = f" ({', '.join(quoted(c[0]) for c in cols)})" if cols else ""
    values = ", ".join(c[2] for c in cols)
    return f"INSERT INTO {table}{names} SELECT {values} FROM generate_series({first}, {first + rows - 1}) g"


@st.composite
def plain_table(draw: st.DrawFn, db: Database, name: str, schema: str) -> tuple[str, int]:
    """A table with a key, altered after its first rows; (qualified name, rows)."""
    table = f"{quoted(schema)}.{quoted(name)}"
    cols = draw(columns("c"))
    unlogged = "UNLOGGED " if draw(st.booleans()) and draw(st.booleans()) else ""
    key = draw(
        st.sampled_from(
            [
                "id int",
                "id int PRIMARY KEY",
                "id serial PRIMARY KEY",
                "id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            ]
        )
    )
    body = ", ".join([key] + [f"{quoted(c)} {t}" for c, t, _ in cols])
    db.statements.append(f"CREATE {unlogged}TABLE {table} ({body})")
    rows = draw(st.sampled_from(ROW_COUNTS))
    identity = "IDENTITY" in key or "serial" in key
    key_col = [] if identity else [("id", "int", "g")]
    first = rows // 2
    if first:
        db.statements.append(insert(table, key_col + cols, first))
    # Column orders after ALTER: a dropped column and one added with a default after rows exist.
    if cols and draw(st.booleans()):
        dropped = draw(st.sampled_from(cols))
        cols.remove(dropped)
        db.statements.append(f"ALTER TABLE {table} DROP COLUMN {quoted(dropped[0])}")
    if draw(st.booleans()):
        kind = draw(st.sampled_from(sorted(VALUES)))
        value = draw(st.sampled_from(VALUES[kind]))
        default = draw(st.sampled_from(["", " DEFAULT 42", " DEFAULT NULL"])) if kind == "int" else ""
        db.statements.append(f"ALTER TABLE {table} ADD COLUMN added {kind}{default}")
        cols.append(("added", kind, value))
    if rows - first:
        db.statements.append(insert(table, key_col + cols, rows - first, first + 1))
    if draw(st.booleans()):
        db.statements.append(f"CREATE UNIQUE INDEX {quoted(name + '_id_desc')} ON {table} (id DESC)")
    if draw(st.booleans()):
        db.statements.append(
            f"CREATE INDEX {quoted(name + '_partial')} ON {table} ((id + 1)) WHERE id % 2 = 0"
        )
    if "PRIMARY KEY" in key and draw(st.booleans()):
        db.statements.append(
            f"ALTER TABLE {table} ADD CONSTRAINT {quoted(name + '_positive')} CHECK (id > 0)"
        )
    identity_choices = ["DEFAULT", "FULL", "NOTHING"]
    if "PRIMARY KEY" in key:
        # On both sides of the threshold: over it the engine builds the key itself.
        identity_choices.append(f"USING INDEX {quoted(name + '_pkey')}")
        if draw(st.booleans()):
            db.statements.append(f"ALTER TABLE {table} CLUSTER ON {quoted(name + '_pkey')}")
    db.statements.append(f"ALTER TABLE {table} REPLICA IDENTITY {draw(st.sampled_from(identity_choices))}")
    if draw(st.booleans()):
        db.statements.append(f"ALTER TABLE {table} SET (fillfactor = 70, autovacuum_enabled = false)")
    if cols and draw(st.booleans()):
        column = quoted(draw(st.sampled_from(cols))[0])
        db.statements.append(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS 321")
        db.statements.append(f"COMMENT ON COLUMN {table}.{column} IS '{draw(st.sampled_from(COMMENTS))}'")
    if draw(st.booleans()):
        db.statements.append(f"COMMENT ON TABLE {table} IS '{draw(st.sampled_from(COMMENTS))}'")
    return table, rows


@st.composite
def inheritance(draw: st.DrawFn, db: Database) -> None:
    """A parent with rows of its own and children that inherit from it."""
    cols = draw(columns("p", (1, 3)))
    body = ", ".join(["id int NOT NULL"] + [f"{quoted(c)} {t}" for c, t, _ in cols])
    db.statements.append(f"CREATE TABLE parent ({body})")
    if cols and draw(st.booleans()):
        dropped = cols.pop()
        db.statements.append(f"ALTER TABLE parent DROP COLUMN {quoted(dropped[0])}")
    # A column added to the parent after a child exists, or a child attached with ALTER TABLE
    # ... INHERIT, gives the child a column order pg_dump does not keep: copies name columns.
    late = ("late", "int", "g * 7")
    add_late = draw(st.booleans())
    children = []
    for child in range(draw(st.integers(1, 2))):
        own = draw(columns(f"k{child}_", (0, 2)))
        if draw(st.booleans()):
            own_body = ", ".join(["id int NOT NULL"] + [f"{quoted(c)} {t}" for c, t, _ in [*own, *cols]])
            db.statements.append(f"CREATE TABLE child{child} ({own_body})")
            db.statements.append(f"ALTER TABLE child{child} INHERIT parent")
        else:
            own_body = ", ".join(f"{quoted(c)} {t}" for c, t, _ in own)
            db.statements.append(f"CREATE TABLE child{child} ({own_body}) INHERITS (parent)")
        children.append((child, own))
    if add_late:
        db.statements.append("ALTER TABLE parent ADD COLUMN late int")
        cols = [*cols, late]
    for child, own in children:
        db.statements.append(
            insert(f"child{child}", [("id", "int", "g"), *cols, *own], draw(st.sampled_from(ROW_COUNTS)))
        )
    db.statements.append(insert("parent", [("id", "int", "g"), *cols], draw(st.sampled_from(ROW_COUNTS))))


@st.composite
def partitions(draw: st.DrawFn, db: Database) -> None:
    """A range-partitioned table whose partitions are made in place or attached, in any order."""
    cols = draw(columns("v", (1, 3)))
    keyed = draw(st.booleans())
    body = ", ".join(["k int NOT NULL"] + [f"{quoted(c)} {t}" for c, t, _ in cols])
    primary = ", PRIMARY KEY (k)" if keyed else ""
    db.statements.append(f"CREATE TABLE measured ({body}, ghost int{primary}) PARTITION BY RANGE (k)")
    # A column dropped from the parent before its partitions exist.
    db.statements.append("ALTER TABLE measured DROP COLUMN ghost")
    bounds = [(1, 1000), (1000, 5000), (5000, 100000)]
    for index in draw(st.permutations(range(len(bounds)))):
        low, high = bounds[index]
        name = f"measured_{index}"
        if draw(st.booleans()):
            db.statements.append(
                f"CREATE TABLE {name} PARTITION OF measured FOR VALUES FROM ({low}) TO ({high})"
            )
        else:
            # Made with the parent's column order: a partition whose columns are in another
            # order is copied by position (known defect).
            db.statements.append(f"CREATE TABLE {name} (LIKE measured INCLUDING ALL)")
            db.statements.append(
                f"ALTER TABLE measured ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})"
            )
    if draw(st.booleans()):
        db.statements.append("CREATE TABLE measured_rest PARTITION OF measured DEFAULT")
        top = 150000
    else:
        top = 99999
    # 7919 is prime to both tops: distinct keys, spread over the partitions.
    db.statements.append(insert("measured", [("k", "int", f"1 + (g * 7919) % {top}"), *cols], 300))
    db.statements.append("CREATE INDEX measured_v ON measured (k DESC)")


@st.composite
def databases(draw: st.DrawFn) -> Database:
    db = Database(copy_roles=draw(st.booleans()))
    db.statements += TYPES
    schema = draw(st.sampled_from(["public", 'Odd "Schema" ü']))
    if schema != "public":
        db.statements.append(f"CREATE SCHEMA {quoted(schema)}")
    tables = [draw(plain_table(db, f"t{i}", schema)) for i in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        draw(inheritance(db))
    if draw(st.booleans()):
        draw(partitions(db))
    first, _ = tables[0]
    if draw(st.booleans()):
        db.statements.append(f"CREATE VIEW seen AS SELECT id FROM {first} WHERE id % 3 = 0")
    if draw(st.booleans()):
        data = draw(st.sampled_from(["WITH DATA", "WITH NO DATA"]))
        db.statements.append(f"CREATE MATERIALIZED VIEW counted AS SELECT count(*) AS n FROM {first} {data}")
    for seq in range(draw(st.integers(0, 2))):
        db.statements.append(f"CREATE SEQUENCE s{seq} INCREMENT BY -3 MINVALUE -1000 MAXVALUE 10 START 4")
        for _ in range(draw(st.integers(0, 3))):
            db.statements.append(f"SELECT nextval('s{seq}')")
    for lo in range(draw(st.integers(0, 2))):
        db.statements.append(
            f"SELECT lo_from_bytea({90000 + lo}, convert_to(repeat('lo ü', {lo * 1000 + 1}), 'UTF8'))"
        )
        if draw(st.booleans()):
            db.statements.append(
                f"COMMENT ON LARGE OBJECT {90000 + lo} IS '{draw(st.sampled_from(COMMENTS))}'"
            )
        if draw(st.booleans()):
            db.statements.append(f"GRANT SELECT ON LARGE OBJECT {90000 + lo} TO oracle_reader")
    # Grants: compared when roles are copied, documented as not copied otherwise.
    for table, _ in tables:
        grant = draw(
            st.sampled_from(
                [
                    "",
                    f"GRANT SELECT ON {table} TO oracle_reader",
                    f"GRANT UPDATE (id) ON {table} TO oracle_writer",
                    f"GRANT ALL ON {table} TO oracle_writer WITH GRANT OPTION",
                    f"REVOKE ALL ON {table} FROM PUBLIC",
                ]
            )
        )
        if grant:
            db.statements.append(grant)
    if draw(st.booleans()):
        db.statements.append("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO oracle_reader")
    if draw(st.booleans()):
        db.statements.append(f"GRANT USAGE ON SCHEMA {quoted(schema)} TO oracle_writer")
    for setting in draw(st.lists(st.sampled_from(DATABASE_SETTINGS), max_size=4, unique=True)):
        db.statements.append(f"ALTER DATABASE {DATABASE} SET {setting}")
    if draw(st.booleans()):
        db.statements.append(f"ALTER ROLE oracle_reader IN DATABASE {DATABASE} SET work_mem = '3MB'")
    if draw(st.booleans()):
        db.statements.append(f"COMMENT ON DATABASE {DATABASE} IS '{draw(st.sampled_from(COMMENTS))}'")
    if draw(st.booleans()):
        db.statements.append(f"ALTER DATABASE {DATABASE} CONNECTION LIMIT 77")
    return db
