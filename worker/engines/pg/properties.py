"""A database's own properties: encoding and locale (fixed at CREATE DATABASE), then its
settings (`ALTER DATABASE ... SET`), connection limit and comment.

pg_dump without --create carries none of them, so the engine reads them from the
source's pg_database and gives them to the target database it creates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from worker.engines.pg.tools import EngineError

PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# Settings whose stored value is a list of quoted elements, not one literal (pg_dump's
# variable_is_guc_list_quote).
LIST_QUOTED_SETTINGS = {
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
}


@dataclass(frozen=True)
class DatabaseProperties:
    encoding: str
    collate: str
    ctype: str
    provider: str  # libc, icu, builtin
    locale: str | None  # the ICU or builtin locale
    icu_rules: str | None
    connection_limit: int
    comment: str | None
    settings: tuple[str, ...] = field(default=())  # "name=value", as pg_db_role_setting holds them

    @property
    def locale_summary(self) -> str:
        extra = f", {self.provider} locale {self.locale}" if self.locale else ""
        return f"encoding {self.encoding}, LC_COLLATE {self.collate}, LC_CTYPE {self.ctype}{extra}"

    def differences(self, other: DatabaseProperties) -> list[str]:
        return [
            f"{name} {mine!r} vs {theirs!r}"
            for name, mine, theirs in (
                ("encoding", self.encoding, other.encoding),
                ("LC_COLLATE", self.collate, other.collate),
                ("LC_CTYPE", self.ctype, other.ctype),
                ("locale provider", self.provider, other.provider),
                ("locale", self.locale, other.locale),
                ("ICU rules", self.icu_rules, other.icu_rules),
                ("connection limit", self.connection_limit, other.connection_limit),
                ("comment", self.comment, other.comment),
                ("settings", sorted(self.settings), sorted(other.settings)),
            )
            if mine != theirs
        ]


def read(conn: psycopg.Connection, database: str) -> DatabaseProperties:
    row = conn.execute(
        """
        SELECT to_jsonb(d), pg_encoding_to_char(d.encoding), shobj_description(d.oid, 'pg_database'),
               coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                         WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
        FROM pg_database d WHERE d.datname = %s
        """,
        [database],
    ).fetchone()
    if row is None:
        raise EngineError(f"database {database} does not exist")
    columns, encoding, comment, settings = row
    provider = PROVIDERS.get(columns.get("datlocprovider") or "c", "libc")
    return DatabaseProperties(
        encoding=encoding,
        collate=columns["datcollate"],
        ctype=columns["datctype"],
        provider=provider,
        locale=(columns.get("datlocale") or columns.get("daticulocale")) if provider != "libc" else None,
        icu_rules=columns.get("daticurules"),
        connection_limit=int(columns["datconnlimit"]),
        comment=comment,
        settings=tuple(settings),
    )


def create_database(conn: psycopg.Connection, database: str, props: DatabaseProperties) -> None:
    """CREATE DATABASE with the source's encoding and locale, or a clear error why not."""
    options = [
        sql.SQL("TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(props.encoding), sql.Literal(props.collate), sql.Literal(props.ctype)
        )
    ]
    if props.provider != "libc":
        options.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(props.provider)))
        keyword = "ICU_LOCALE" if props.provider == "icu" else "BUILTIN_LOCALE"
        options.append(sql.SQL(keyword + " {}").format(sql.Literal(props.locale)))
        if props.icu_rules:
            options.append(sql.SQL("ICU_RULES {}").format(sql.Literal(props.icu_rules)))
    statement = sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(database)) + sql.SQL(" ").join(options)
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        raise EngineError(
            f"the target cannot create database {database} as the source has it ({props.locale_summary}): "
            f"{str(exc).strip()}"
        ) from exc


def apply_settings(conn: psycopg.Connection, database: str, props: DatabaseProperties) -> None:
    """Settings, connection limit and comment; `conn` is a session of its own on the target."""
    ident = sql.Identifier(database)
    for entry in props.settings:
        name, _, value = entry.partition("=")
        setting = sql.Identifier(*name.split("."))
        try:
            if name.lower() in LIST_QUOTED_SETTINGS:
                # set_config parses the list as the server stored it (its elements keep their
                # quoting); FROM CURRENT then stores exactly that. Local to a transaction: this
                # session's own statements must not run under the setting.
                with conn.transaction():
                    conn.execute("SELECT set_config(%s, %s, true)", [name, value])
                    conn.execute(sql.SQL("ALTER DATABASE {} SET {} FROM CURRENT").format(ident, setting))
            else:
                # As one literal, the text stored as written (FROM CURRENT would store the
                # server's normal form: '60s' as '1min'), as pg_dump writes it back.
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET {} TO {}").format(ident, setting, sql.Literal(value))
                )
        except psycopg.Error as exc:
            raise EngineError(
                f"cannot apply the source's setting {name} to database {database}: {exc}"
            ) from exc
    if props.connection_limit != -1:
        conn.execute(
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                ident, sql.Literal(props.connection_limit)
            )
        )
    if props.comment is not None:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(props.comment)))
