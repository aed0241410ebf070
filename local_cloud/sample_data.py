"""A realistic sample database for the demo and the end-to-end tests: several tables
across schemas, foreign keys, indexes, sequences and a few megabytes of rows."""

from __future__ import annotations

import psycopg
from psycopg import sql

SAMPLE_DATABASE = "shop"

SCHEMA = """
CREATE SCHEMA inventory;
CREATE SCHEMA sales;
CREATE TABLE inventory.products (
    id bigserial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sales.customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_country_idx ON sales.customers (country);
CREATE TABLE sales.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES sales.customers (id),
    ordered_at timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('new', 'paid', 'shipped', 'cancelled'))
);
CREATE INDEX orders_customer_idx ON sales.orders (customer_id);
CREATE INDEX orders_ordered_at_idx ON sales.orders (ordered_at);
CREATE TABLE sales.order_items (
    order_id bigint NOT NULL REFERENCES sales.orders (id) ON DELETE CASCADE,
    line int NOT NULL,
    product_id bigint NOT NULL REFERENCES inventory.products (id),
    quantity int NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_items_product_idx ON sales.order_items (product_id);
CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    payload jsonb NOT NULL
);
"""

# Deterministic rows (no random()): the same scale gives the same data on every run.
FILL = """
INSERT INTO inventory.products (sku, name, price, created_at)
SELECT 'SKU-' || lpad(g::text, 6, '0'), 'Product ' || g || ' ' || md5(g::text),
       ((g * 37) % 10000) / 100.0, timestamptz '2024-01-01' + g * interval '1 hour'
FROM generate_series(1, {products}) g;
INSERT INTO sales.customers (email, name, country, created_at)
SELECT 'customer' || g || '@example.com', 'Customer ' || md5(g::text),
       (ARRAY['US', 'DE', 'FR', 'JP', 'BR', 'IN'])[1 + g % 6],
       timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, {customers}) g;
INSERT INTO sales.orders (customer_id, ordered_at, status)
SELECT 1 + (g * 7) % {customers}, timestamptz '2024-06-01' + g * interval '37 seconds',
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4]
FROM generate_series(1, {orders}) g;
INSERT INTO sales.order_items (order_id, line, product_id, quantity, unit_price)
SELECT o, l, 1 + (o * 13 + l * 7) % {products}, 1 + (o + l) % 5, ((o * l * 31) % 10000) / 100.0
FROM generate_series(1, {orders}) o, generate_series(1, 3) l;
INSERT INTO public.audit_log (at, actor, payload)
SELECT timestamptz '2024-06-01' + g * interval '1 second', 'user' || (g % 50),
       jsonb_build_object('event', 'order.updated', 'order', g, 'note', repeat(md5(g::text), 4))
FROM generate_series(1, {audit}) g;
ANALYZE;
"""

TABLES = (
    "inventory.products",
    "sales.customers",
    "sales.orders",
    "sales.order_items",
    "public.audit_log",
)


def create_sample(server_url: str, *, database: str = SAMPLE_DATABASE, scale: float = 1.0) -> None:
    """Create `database` on the server at `server_url` (a URL of any database there) and fill it.

    Scale 1 is about 20 MB on disk (catalogs included): 1,000 products, 5,000 customers, 20,000 orders,
    60,000 order lines and 10,000 audit entries.
    """
    counts = {
        "products": max(10, int(1000 * scale)),
        "customers": max(10, int(5000 * scale)),
        "orders": max(10, int(20000 * scale)),
        "audit": max(10, int(10000 * scale)),
    }
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(database_url(server_url, database)) as conn:
        conn.execute(SCHEMA)
        conn.execute(FILL.format(**counts))


def database_url(server_url: str, database: str) -> str:
    """The same server's URL for another database."""
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{database}"


def row_counts(server_url: str, database: str = SAMPLE_DATABASE) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg.connect(database_url(server_url, database)) as conn:
        for table in TABLES:
            schema, name = table.split(".")
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def table_checksums(server_url: str, database: str = SAMPLE_DATABASE) -> dict[str, str]:
    """An md5 of every table's rows in primary-key order: equal checksums, equal content."""
    sums: dict[str, str] = {}
    with psycopg.connect(database_url(server_url, database)) as conn:
        for table in TABLES:
            schema, name = table.split(".")
            query = sql.SQL(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {}.{} t"
            ).format(sql.Identifier(schema), sql.Identifier(name))
            row = conn.execute(query).fetchone()
            sums[table] = str(row[0]) if row else ""
    return sums


def database_size_bytes(server_url: str, database: str = SAMPLE_DATABASE) -> int:
    with psycopg.connect(server_url) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (database,)).fetchone()
    return int(row[0]) if row else 0
