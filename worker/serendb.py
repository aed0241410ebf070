"""A SerenDB project target, prepared through the SerenDB console API as the replicator CLI
prepares it (`Authorization: Bearer <key>`, answers wrapped as {"data": ...}): before
`init` the databases the job names are created on the branch when missing; before a run
that sets up continuous replication, logical replication is enabled on the project.

The key is a credential: it goes only into the Authorization header, never into a log
line, an error or a URL, and redirects are refused so that it never leaves for another host.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jobs.redact import redact
from jobs.spec import Command, ProjectTarget

DEFAULT_CONSOLE_URL = "https://api.serendb.com"
MAX_ERROR_DETAIL = 200


class ConsoleError(Exception):
    """The console refused or failed; the message is the job's error (no secret in it)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an error: the Authorization header never follows it


@dataclass
class ConsoleClient:
    base_url: str
    api_key: str = field(repr=False)
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._opener = urllib.request.build_opener(_NoRedirects)

    def get_project(self, project_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/projects/{_segment(project_id)}", what=f"project {project_id}"))

    def enable_logical_replication(self, project_id: str) -> dict[str, Any]:
        return dict(
            self._call(
                "PATCH",
                f"/api/projects/{_segment(project_id)}",
                {"enable_logical_replication": True},
                what=f"project {project_id}",
            )
        )

    def list_branches(self, project_id: str) -> list[dict[str, Any]]:
        path = f"/api/projects/{_segment(project_id)}/branches"
        return list(self._call("GET", path, what=f"project {project_id}"))

    def connection_string(self, project_id: str, branch_id: str) -> str:
        path = f"{_branch_path(project_id, branch_id)}/connection-string?pooled=false"
        data = self._call(
            "GET",
            path,
            what=f"branch {branch_id}",
            not_found=f"branch {branch_id} of project {project_id} has no compute endpoint; "
            "start one in the SerenDB console or pick another branch",
        )
        return str(data["connection_string"])

    def list_databases(self, project_id: str, branch_id: str) -> list[str]:
        path = f"{_branch_path(project_id, branch_id)}/databases"
        return [str(db["name"]) for db in self._call("GET", path, what=f"branch {branch_id}")]

    def create_database(self, project_id: str, branch_id: str, name: str) -> None:
        path = f"{_branch_path(project_id, branch_id)}/databases"
        self._call("POST", path, {"name": name}, what=f"branch {branch_id}")

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        what: str,
        not_found: str | None = None,
    ) -> Any:
        request = urllib.request.Request(  # noqa: S310 (the operator's console URL, https by default)
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout_seconds) as answer:
                payload = json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise self._refusal(error, what, not_found) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ConsoleError(f"the SerenDB console API could not be reached: {reason}") from None
        except ValueError:
            raise ConsoleError(f"the SerenDB console API answered {what} with bad JSON") from None
        if not isinstance(payload, dict) or "data" not in payload:
            raise ConsoleError(f"the SerenDB console API answered {what} without data")
        return payload["data"]

    def _refusal(self, error: urllib.error.HTTPError, what: str, not_found: str | None) -> ConsoleError:
        if error.code == 401:
            return ConsoleError(
                "the SerenDB console refused the job's seren_api_key (401): it is invalid or expired"
            )
        if error.code == 403:
            return ConsoleError(f"the job's seren_api_key may not use {what} (403)")
        if error.code == 404:
            return ConsoleError(not_found or f"SerenDB {what} was not found (404) with this seren_api_key")
        try:
            detail = error.read(MAX_ERROR_DETAIL * 4).decode(errors="replace")
        except OSError:
            detail = ""
        detail = redact(" ".join(detail.split()), [self.api_key])[:MAX_ERROR_DETAIL]
        suffix = f": {detail}" if detail else ""
        return ConsoleError(f"the SerenDB console API answered {error.code} for {what}{suffix}")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _branch_path(project_id: str, branch_id: str) -> str:
    return f"/api/projects/{_segment(project_id)}/branches/{_segment(branch_id)}"


def needs_logical_replication(command: Command, enable_sync: bool) -> bool:
    """`sync`, and an `init` that goes on to continuous replication."""
    return command is Command.SYNC or (command is Command.INIT and enable_sync)


def prepare_target(
    client: ConsoleClient,
    project: ProjectTarget,
    command: Command,
    *,
    enable_sync: bool,
    note: Callable[[str], None],
) -> None:
    """Check the project, branch and its compute; create the missing target databases before
    `init`; enable logical replication when the run needs it."""
    details = client.get_project(project.project_id)
    branches = {str(branch.get("id")) for branch in client.list_branches(project.project_id)}
    if project.branch_id not in branches:
        raise ConsoleError(f"SerenDB project {project.project_id} has no branch {project.branch_id}")
    client.connection_string(project.project_id, project.branch_id)
    if command is Command.INIT and project.databases:
        existing = set(client.list_databases(project.project_id, project.branch_id))
        for name in project.databases:
            if name not in existing:
                client.create_database(project.project_id, project.branch_id, name)
                note(f"created database {name} on SerenDB branch {project.branch_id}")
    if needs_logical_replication(command, enable_sync) and not details.get("enable_logical_replication"):
        updated = client.enable_logical_replication(project.project_id)
        if not updated.get("enable_logical_replication"):
            raise ConsoleError(
                f"logical replication could not be enabled on SerenDB project {project.project_id}"
            )
        note(f"enabled logical replication on SerenDB project {project.project_id}")
