"""Throwaway PostgreSQL servers for tests, the demo and benchmarks.

pgserver ships PostgreSQL binaries but only listens on a unix socket, and jobs need TCP
URLs with password auth, so the server is started here from those binaries with
initdb + pg_ctl: 127.0.0.1 on a free port, scram-sha-256 for everything. initdb refuses
to run as root, so as root the cluster is owned by an unprivileged system user.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

RUN_AS_USER = "pgserver"
DEFAULT_SUPERUSER = "replicator_admin"
# Debian's PostgreSQL 15 server, when installed: a source of another major version for tests.
DEBIAN_PG15_BIN_DIR = Path("/usr/lib/postgresql/15/bin")


def bin_dir() -> Path:
    """The directory of PostgreSQL server binaries (initdb, pg_ctl, postgres, client tools)."""
    # Located without importing pgserver: its import has side effects (runtime dirs, atexit hooks).
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed; run `make venv`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", RUN_AS_USER], check=True)
        entry = pwd.getpwnam(RUN_AS_USER)
    # The unprivileged user must be able to reach, execute and read the bundled installation.
    install = bin_dir().parent
    for parent in install.parents:
        if parent == parent.parent:
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    for dirpath, dirnames, filenames in os.walk(install):
        for name in dirnames:
            path = Path(dirpath, name)
            path.chmod(path.stat().st_mode | 0o055)
        for name in filenames:
            path = Path(dirpath, name)
            path.chmod(path.stat().st_mode | 0o044)
    return entry


@dataclass
class LocalPostgres:
    """A running throwaway server. Stop it with `.stop()` (also done at interpreter exit)."""

    port: int
    user: str
    password: str
    root: Path
    run_as: pwd.struct_passwd | None = field(repr=False, default=None)
    stopped: bool = False
    # The server binaries it runs on (initdb, pg_ctl, postgres).
    binaries: Path = field(default_factory=bin_dir)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{dbname}"
        )

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        pg_ctl = str(self.binaries / "pg_ctl")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            argv = [pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]
            _run_as(argv, self.run_as, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_as(argv: list[str], user: pwd.struct_passwd | None, timeout: float = 60) -> None:
    # stdout to DEVNULL: the server started by pg_ctl inherits it, and a pipe would never close.
    subprocess.run(
        argv,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        cwd="/",
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )


def start_postgres(
    *,
    password: str,
    user: str = DEFAULT_SUPERUSER,
    logical: bool = False,
    fast: bool = True,
    settings: dict[str, str] | None = None,
    binaries: Path | None = None,
) -> LocalPostgres:
    """Start a server on 127.0.0.1:<free port>; `user` is its superuser, `password` its password.

    `logical` sets wal_level=logical. `fast` turns off fsync and friends: the data is
    thrown away anyway. `binaries` is the directory of the server binaries to run (default:
    pgserver's, `bin_dir()`), e.g. `DEBIAN_PG15_BIN_DIR` for a server of another major version.
    """
    run_as = _system_user()
    root = Path(tempfile.mkdtemp(prefix="localpg-"))
    root.chmod(0o700)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if run_as is not None:
        for path in (root, pwfile):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    server = LocalPostgres(
        port=_free_port(),
        user=user,
        password=password,
        root=root,
        run_as=run_as,
        binaries=binaries or bin_dir(),
    )
    try:
        _run_as(
            [
                str(server.binaries / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            run_as,
        )
        pwfile.unlink()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(server.port),
            "unix_socket_directories": f"'{root}'",
            "max_connections": "100",
            "wal_level": "logical" if logical else "replica",
            "max_wal_senders": "20",
            "max_replication_slots": "20",
            "max_logical_replication_workers": "10",
            "max_worker_processes": "20",
            "shared_buffers": "128MB",
            "max_wal_size": "2GB",
            "logging_collector": "off",
        }
        if fast:
            conf.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        conf.update(settings or {})
        with (server.data_dir / "postgresql.conf").open("a") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        _run_as(
            [
                str(server.binaries / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            run_as,
            timeout=90,
        )
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)
    return server
