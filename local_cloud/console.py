"""A stand-in for the SerenDB console API, in front of a local PostgreSQL server.

It serves the calls the replicator CLI (and the worker) makes, in the console's answer
shapes ({"data": ...}), for the projects it is given: a branch's databases are the
server's databases, creating one runs CREATE DATABASE there, and its connection string
is the server's URL. A branch without compute answers 404 on its connection string, as
the console does. Requests are kept as (method, path) for tests: never the key.

python -m local_cloud.console --target postgresql://... --api-key KEY [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


@dataclass
class Branch:
    id: str
    name: str
    is_default: bool = False
    has_compute: bool = True


@dataclass
class Project:
    id: str
    name: str
    branches: list[Branch]
    enable_logical_replication: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "enable_logical_replication": self.enable_logical_replication,
            "organization_id": None,
        }


class ConsoleError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ConsoleStandIn:
    """`target_url`: a superuser URL of the server that plays every branch's compute."""

    target_url: str = field(repr=False)
    api_key: str = field(repr=False)
    projects: list[Project]
    port: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConsoleStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ConsoleStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API -------------------------------------------------------------------------

    def answer(self, method: str, target: str, authorization: str, body: bytes) -> tuple[int, Any]:
        path = urlsplit(target).path
        with self._lock:
            self.requests.append((method, path))
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self.api_key}".encode()):
            return 401, {"error": "invalid or expired API key"}
        parts = [unquote(part) for part in path.strip("/").split("/")]
        try:
            return 200, {"data": self._route(method, parts, body)}
        except ConsoleError as error:
            return error.status, {"error": str(error)}

    def _route(self, method: str, parts: list[str], body: bytes) -> Any:
        if parts == ["api", "projects"] and method == "GET":
            return [project.view() for project in self.projects]
        if len(parts) < 3 or parts[:2] != ["api", "projects"]:
            raise ConsoleError(404, "not found")
        project = self._project(parts[2])
        rest = parts[3:]
        if not rest and method == "GET":
            return project.view()
        if not rest and method == "PATCH":
            update = _json_object(body)
            if update.get("enable_logical_replication") is True:
                project.enable_logical_replication = True
            return project.view()
        if rest == ["branches"] and method == "GET":
            return [
                {"id": b.id, "name": b.name, "project_id": project.id, "is_default": b.is_default}
                for b in project.branches
            ]
        if len(rest) == 3 and rest[0] == "branches":
            branch = self._branch(project, rest[1])
            if rest[2] == "connection-string" and method == "GET":
                if not branch.has_compute:
                    raise ConsoleError(404, "branch has no compute endpoint")
                return {"connection_string": self.target_url}
            if rest[2] == "databases":
                if not branch.has_compute:
                    raise ConsoleError(409, "branch has no compute endpoint")
                if method == "GET":
                    return [{"id": name, "name": name, "branch_id": branch.id} for name in self._databases()]
                if method == "POST":
                    name = _json_object(body).get("name")
                    if not isinstance(name, str) or not _NAME.match(name):
                        raise ConsoleError(400, "invalid database name")
                    self._create_database(name)
                    return {"id": name, "name": name, "branch_id": branch.id}
        raise ConsoleError(404, "not found")

    def _project(self, project_id: str) -> Project:
        for project in self.projects:
            if project.id == project_id:
                return project
        raise ConsoleError(404, "project not found")

    @staticmethod
    def _branch(project: Project, branch_id: str) -> Branch:
        for branch in project.branches:
            if branch.id == branch_id:
                return branch
        raise ConsoleError(404, "branch not found")

    def _databases(self) -> list[str]:
        with psycopg.connect(self.target_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def _create_database(self, name: str) -> None:
        with psycopg.connect(self.target_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                raise ConsoleError(409, "database already exists")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        console = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = console.answer(
                    self.command, self.path, self.headers.get("authorization") or "", body
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request lines only, and nothing here needs them

        return Handler


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise ConsoleError(400, "invalid JSON") from exc
    if not isinstance(value, dict):
        raise ConsoleError(400, "expected a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local SerenDB console API stand-in")
    parser.add_argument("--target", required=True, help="superuser URL of the server playing the branches")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--project", default="local-project")
    parser.add_argument("--branch", default="local-branch")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    project = Project(args.project, args.project, [Branch(args.branch, "main", is_default=True)])
    with ConsoleStandIn(args.target, args.api_key, [project], port=args.port) as console:
        print(
            f"SerenDB console stand-in: {console.url}  project {project.id}  branch {args.branch}", flush=True
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
