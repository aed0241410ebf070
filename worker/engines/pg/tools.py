"""PostgreSQL's client tools and connections, with credentials kept out of argv.

Child tools (pg_dump, pg_restore, psql) get host, checked address and user through PG*
environment variables built per side, and the password through a 0600 password file
(PGPASSFILE): a process's environment stays readable in /proc for its whole life. psycopg
connections are built from keyword arguments in process. Every connection goes to the
address the worker checked (`hostaddr`), never to a fresh lookup of the name.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from jobs.urls import ConnectionUrl
from worker.engines.pg.events import Emitter

BIN_DIR_ENV = "PG_ENGINE_BIN_DIR"
# Environment variables the engine itself receives that no child tool may inherit.
PRIVATE_ENV = ("SOURCE_URL", "TARGET_URL", "REPLICATION_JOB")
# Settings that make row text identical on both sides (checksums) and tools predictable.
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
# Every session of the engine reads and writes text as UTF-8, whatever client_encoding the
# URL or the database's own settings (ALTER DATABASE ... SET client_encoding) would give it:
# every server encoding converts to it, while LATIN1 cannot hold a source's other characters.
CLIENT_ENCODING = "UTF8"


class EngineError(RuntimeError):
    """A failure with a message fit for the job's error (no credentials in it)."""


@dataclass(frozen=True)
class Tools:
    bin_dir: Path
    major: int

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    if os.environ.get(BIN_DIR_ENV):
        return [Path(os.environ[BIN_DIR_ENV])]
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return [d for d in dirs if all((d / tool).is_file() for tool in ("pg_dump", "pg_restore", "psql"))]


def _major(pg_dump: Path) -> int:
    out = subprocess.run([str(pg_dump), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise EngineError(f"cannot read the version of {pg_dump}")
    return int(match.group(1))


def find_tools(source_major: int) -> Tools:
    """The newest client tools available; it must be at least the source's major version."""
    found = [Tools(d, _major(d / "pg_dump")) for d in _candidate_dirs()]
    if not found:
        raise EngineError("pg_dump, pg_restore and psql were not found (PATH, pgserver, /usr/lib/postgresql)")
    best = max(found, key=lambda t: t.major)
    if best.major < source_major:
        raise EngineError(
            f"pg_dump {best.major} is older than the source server (PostgreSQL {source_major}); "
            f"install PostgreSQL {source_major} client tools or set {BIN_DIR_ENV}"
        )
    return best


def conn_kwargs(url: ConnectionUrl, database: str | None = None) -> dict[str, str]:
    kwargs = {"host": url.host, "port": str(url.port), "dbname": database or url.database}
    if url.hostaddr:
        kwargs["hostaddr"] = url.hostaddr
    if url.user:
        kwargs["user"] = url.user
    if url.password is not None:
        kwargs["password"] = url.password
    kwargs.update(dict(url.parameters))
    kwargs["client_encoding"] = CLIENT_ENCODING
    return kwargs


def connect(
    url: ConnectionUrl, database: str | None = None, *, autocommit: bool = True
) -> psycopg.Connection:
    kwargs = conn_kwargs(url, database)
    kwargs.setdefault("connect_timeout", "15")
    return psycopg.connect(
        psycopg.conninfo.make_conninfo(options=SESSION_OPTIONS, **kwargs), autocommit=autocommit
    )


def replication_connection(url: ConnectionUrl, database: str) -> psycopg.Connection:
    """A walsender connection, for CREATE_REPLICATION_SLOT with an exported snapshot."""
    info = psycopg.conninfo.make_conninfo(replication="database", **conn_kwargs(url, database))
    return psycopg.connect(info, autocommit=True)


def conninfo(url: ConnectionUrl, database: str) -> str:
    """A libpq conninfo string with the password: only for CREATE SUBSCRIPTION on the target."""
    return psycopg.conninfo.make_conninfo(**conn_kwargs(url, database))


# URL parameters (jobs.urls.ALLOWED_PARAMETERS) the client tools read from the environment;
# the others (keepalives*, tcp_user_timeout, fallback_application_name) tune psycopg's
# connections only.
_LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "sslrootcert": "PGSSLROOTCERT",
    "channel_binding": "PGCHANNELBINDING",
    "client_encoding": "PGCLIENTENCODING",
    "gssencmode": "PGGSSENCMODE",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "require_auth": "PGREQUIREAUTH",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslsni": "PGSSLSNI",
}


def tool_env(url: ConnectionUrl, database: str) -> dict[str, str]:
    """Environment for a client tool connecting to `database` on `url`'s server."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV and not k.startswith("PG")}
    env.update({"PGHOST": url.host, "PGPORT": str(url.port), "PGDATABASE": database})
    if url.hostaddr:
        env["PGHOSTADDR"] = url.hostaddr
    if url.user:
        env["PGUSER"] = url.user
    if url.password is not None:
        env["PGPASSFILE"] = _password_file(url)
    for key, value in url.parameters:
        if key in _LIBPQ_ENV:
            env[_LIBPQ_ENV[key]] = value
    env["PGOPTIONS"] = SESSION_OPTIONS
    env["PGCLIENTENCODING"] = CLIENT_ENCODING
    return env


_password_files: dict[ConnectionUrl, str] = {}


def _password_file(url: ConnectionUrl) -> str:
    """A 0600 password file with `url`'s one entry, in a 0700 directory removed at exit."""
    if url not in _password_files:
        directory = tempfile.mkdtemp(prefix="pg-engine-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = os.path.join(directory, "pgpass")
        fields = [url.host, str(url.port), "*", url.user or "*", url.password or ""]
        line = ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(line + "\n")
        _password_files[url] = path
    return _password_files[url]


def server_major(conn: psycopg.Connection) -> int:
    return conn.info.server_version // 10000


def quote_pattern(schema: str, table: str) -> str:
    """A pg_dump -t/-T pattern that matches exactly this table (no wildcards)."""

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    return f"{q(schema)}.{q(table)}"


def run_pipeline(steps: list[tuple[list[str], dict[str, str]]], what: str, emit: Emitter) -> None:
    """Run tools connected stdout -> stdin; any failure raises with the tools' last error lines."""
    with contextlib.ExitStack() as stack:
        procs: list[subprocess.Popen[bytes]] = []
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in steps]
        previous = None
        for index, (argv, env) in enumerate(steps):
            last = index == len(steps) - 1
            proc = subprocess.Popen(
                argv,
                stdin=previous if previous is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                stderr=errs[index],
                env=env,
            )
            if previous is not None:
                previous.close()
            previous = proc.stdout
            procs.append(proc)
        codes = [proc.wait() for proc in procs]
        messages = []
        for err in errs:
            err.seek(0)
            messages += [line for line in err.read().decode(errors="replace").splitlines() if line.strip()]
    # The tools' own lines are warnings even when they failed: the failure is the engine's
    # error line, with their gist clipped in it; theirs can hold what the source wrote.
    for line in messages:
        emit.log("warn", line)
    if any(codes):
        raise EngineError(f"{what} failed: {failure_detail(messages) or f'exit codes {codes}'}")


# The most of a text the source controls (a server's error, a tool's output) that one
# engine error carries.
SOURCE_TEXT_LIMIT = 300


def source_text(text: str) -> str:
    """Text the source may control, as one clipped line: its lines cannot pass for the
    engine's own, nor crowd the engine's words out of a job's error."""
    line = " ".join(text.split())
    return line if len(line) <= SOURCE_TEXT_LIMIT else line[: SOURCE_TEXT_LIMIT - 1] + "…"


_CAUSE = re.compile(r"\b(ERROR|FATAL|error|fatal):")
_STATEMENT = "Command was:"


def failure_detail(messages: list[str]) -> str:
    """The tools' real error and the statement it came from, not just their last lines.

    pg_restore ends with context ("Command was: ...", "LINE 1: ...", "errors ignored"),
    so the line that says what went wrong is often not among the last few.
    """
    causes = [line.strip() for line in messages if _CAUSE.search(line)]
    detail = source_text("; ".join(causes[-2:]) or "; ".join(messages[-3:]))
    statement = next((line for line in reversed(messages) if line.startswith(_STATEMENT)), None)
    if statement is not None:
        detail += f" (statement: {source_text(statement.removeprefix(_STATEMENT))[:200]})"
    return detail
