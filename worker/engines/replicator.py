"""The `seren-replicator` binary: argv per command (reference/upstream.md §2) and its log lines.

The production engine when its binary is present (ENGINE=auto; see select_engine). It takes
the source URL only as --source, and its own connections (tokio-postgres) take a password
only inside the URL, so both passwords sit in its argv, readable by root alone on the worker
image (/proc mounted hidepid=2; see README.md, "seren-replicator"). They are in the
invocation's secrets so nothing it prints is stored unredacted. Each URL carries the address
the worker checked as a `hostaddr` query parameter: the binary's own connections go there,
but the pg_dump/pg_restore/psql it spawns get the host name and resolve it again.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from jobs.attempts import DatabaseCheckpoint
from jobs.progress import Progress
from jobs.redact import redact
from jobs.spec import Command, JobFilter
from worker.engines.base import EngineJob, Invocation, ParsedLine, clip, job_secrets, looks_like_error
from worker.engines.pg.engine_input import engine_input
from worker.engines.pg.events import CHECKPOINT_EVENT
from worker.engines.replicator_preflight import STARTED_LINE

DEFAULT_PATH = "/opt/seren-replicator/seren-replicator"
PATH_ENV = "SEREN_REPLICATOR_PATH"

# Which filter flags each subcommand accepts, and the unattended flags it needs.
_FILTER_FLAGS: dict[Command, tuple[str, ...]] = {
    Command.INIT: ("include_databases", "exclude_databases", "include_tables", "exclude_tables"),
    Command.VALIDATE: ("include_databases", "exclude_databases", "include_tables", "exclude_tables"),
    Command.SYNC: ("include_databases", "exclude_databases", "include_tables", "exclude_tables"),
    Command.VERIFY: ("include_databases", "exclude_databases", "include_tables", "exclude_tables"),
    Command.STATUS: ("include_databases", "exclude_databases"),
}
# init without --local hands the job to the remote service by itself (a *.serendb.com
# target, or a failed preflight): the worker is where it runs.
_UNATTENDED: dict[Command, tuple[str, ...]] = {
    Command.INIT: ("--yes", "--local"),
    Command.VALIDATE: ("--no-interactive",),
    Command.SYNC: ("--no-interactive",),
    Command.VERIFY: (),
    Command.STATUS: (),
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# tracing's default format: "<timestamp>  INFO target::path: message" (level padded to 5).
_TRACING = re.compile(
    r"\s(?P<level>TRACE|DEBUG|INFO|WARN|ERROR)\s+(?:(?P<target>[\w:]+):\s)?(?P<message>.*)$"
)
# "database 2/5: shop", "database 2 of 5 (shop)", "[2/5] ... database shop"
_DB_COUNT = re.compile(r"(?i)database\s+(?P<n>\d+)\s*(?:/|of)\s*(?P<total>\d+)\W*(?P<name>[A-Za-z_][\w\-]*)?")
_BRACKET_COUNT = re.compile(
    r"\[(?P<n>\d+)/(?P<total>\d+)\]\s*(?:.*?\bdatabase\s+)?['\"`]?(?P<name>[A-Za-z_][\w\-]*)?"
)
_DONE = re.compile(r"(?i)\b(completed|complete|finished|done|replicated)\b")

EXIT_MESSAGES = {
    1: "seren-replicator reported a failure",
    2: "seren-replicator rejected its arguments",
    130: "seren-replicator was interrupted",
    137: "seren-replicator was killed",
    143: "seren-replicator was terminated",
}


def binary_path() -> Path:
    return Path(os.environ.get(PATH_ENV) or DEFAULT_PATH)


def binary_available() -> bool:
    path = binary_path()
    return path.is_file() and os.access(path, os.X_OK)


def with_hostaddr(url: str, hostaddr: str | None) -> str:
    """`url` with `hostaddr=<checked address>` added to its query (jobs.urls refuses a
    hostaddr parameter of the user's own)."""
    if hostaddr is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}hostaddr={hostaddr}"


def _checkpoint_event(text: str) -> tuple[str, DatabaseCheckpoint] | None:
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
        if isinstance(event, dict) and event.get("event") == CHECKPOINT_EVENT:
            return str(event.get("database") or ""), DatabaseCheckpoint.model_validate(event)
    except (ValueError, ValidationError):
        pass
    return None


def _filter_args(command: Command, job_filter: JobFilter) -> list[str]:
    args: list[str] = []
    for name in _FILTER_FLAGS[command]:
        values: list[str] = getattr(job_filter, name)
        if values:
            args += ["--" + name.replace("_", "-"), ",".join(values)]
    return args


@dataclass
class ReplicatorParser:
    secrets: list[str] = field(repr=False)
    progress: Progress = field(default_factory=Progress)
    # The preflight's output comes first (`replicator_preflight`): only it records checkpoints.
    in_preflight: bool = False

    def parse_line(self, line: str) -> ParsedLine:
        text = redact(_ANSI.sub("", line.rstrip("\r\n")), self.secrets)
        if self.in_preflight:
            if text == STARTED_LINE:
                self.in_preflight = False
            checkpoint = _checkpoint_event(text)
            if checkpoint is not None:
                database, entry = checkpoint
                return ParsedLine(log=f"CHECKPOINT: {database} {entry.state}", checkpoint=checkpoint)
        match = _TRACING.search(text)
        if match is None:
            return ParsedLine(log=text, is_error=looks_like_error(text))
        level, message = match["level"], match["message"].strip()
        if level in ("TRACE", "DEBUG") or not message:
            return ParsedLine(log=text)
        counted = _DB_COUNT.search(message) or _BRACKET_COUNT.search(message)
        update: dict[str, object] = {"message": clip(message)}
        if counted:
            current, total = int(counted["n"]), int(counted["total"])
            finished = bool(_DONE.search(message))
            update |= {
                "databases_total": total,
                "databases_completed": min(total, current if finished else current - 1),
            }
            if counted["name"]:
                update["current_database"] = counted["name"]
        self.progress = self.progress.model_copy(update=update)
        return ParsedLine(log=text, progress=self.progress, is_error=level == "ERROR")


class ReplicatorEngine:
    name = "seren-replicator"

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or binary_path()

    def invocation(self, job: EngineJob) -> Invocation:
        """The binary itself, but for an `init` that may not replace the user's databases:
        that runs the preflight first (`worker.engines.replicator_preflight`), which checks the
        target and then becomes the binary."""
        argv = self.binary_argv(job)
        # The job's log_level is the CLI's --log value, a tracing filter: RUST_LOG as given.
        env = {"RUST_LOG": job.options.log_level, "NO_COLOR": "1"}
        urls_as_passed = [
            with_hostaddr(job.source_url, job.source_hostaddr),
            with_hostaddr(job.target_url, job.target_hostaddr),
        ]
        secrets = [*urls_as_passed, *job_secrets(job)]
        if job.command is not Command.INIT or job.options.drop_existing:
            return Invocation(argv=argv, env=env, secrets=secrets)
        preflight_input = engine_input(job) | {"binary_argv": argv}
        return Invocation(
            argv=[sys.executable, "-m", "worker.engines.replicator_preflight"],
            env=env | {"PYTHONUNBUFFERED": "1"},
            secrets=secrets,
            stdin=json.dumps(preflight_input).encode(),
        )

    def binary_argv(self, job: EngineJob) -> list[str]:
        source_url = with_hostaddr(job.source_url, job.source_hostaddr)
        target_url = with_hostaddr(job.target_url, job.target_hostaddr)
        argv = [str(self.path), job.command.value, "--source", source_url, "--target", target_url]
        argv += _filter_args(job.command, job.filter)
        if job.command is Command.INIT:
            if job.options.drop_existing:
                argv.append("--drop-existing")
            if not job.options.enable_sync:
                argv.append("--no-sync")
            if job.options.no_resume:
                argv.append("--no-resume")
        argv += _UNATTENDED[job.command]
        return argv

    def parser(self, invocation: Invocation) -> ReplicatorParser:
        return ReplicatorParser(secrets=invocation.secrets, in_preflight=bool(invocation.stdin))

    def exit_message(self, code: int) -> str:
        if code < 0:
            return f"seren-replicator was stopped by signal {-code}"
        return EXIT_MESSAGES.get(code, f"seren-replicator exited with code {code}")
