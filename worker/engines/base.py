"""What every engine provides to the worker: what to run, and how to read what it prints.

The worker owns the process (spawning, process group, heartbeats, cancel, timeouts);
an engine only builds an `Invocation` and parses output lines through an `OutputParser`
made for that invocation, so every line is redacted with the run's own secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from jobs.attempts import DatabaseCheckpoint
from jobs.progress import MAX_MESSAGE_LENGTH, Progress
from jobs.redact import redact
from jobs.spec import Command, JobFilter, JobOptions
from jobs.urls import parse_url

MAX_SUMMARY_LENGTH = 1000
SUMMARY_LINES = 5
# The engine's environment names the file descriptor on which the worker writes, one line each,
# how many of the engine's checkpoint events are recorded on the job item so far.
CHECKPOINT_ACK_FD = "ENGINE_CHECKPOINT_ACK_FD"


@dataclass(frozen=True)
class EngineJob:
    """One run's inputs. URLs are plaintext: never log this object."""

    command: Command
    source_url: str = field(repr=False)
    target_url: str = field(repr=False)
    filter: JobFilter = field(default_factory=JobFilter)
    options: JobOptions = field(default_factory=JobOptions)
    # The checked addresses to connect to (worker.addresses); None: connect by name.
    source_hostaddr: str | None = None
    target_hostaddr: str | None = None
    # init: what earlier attempts of this job left on the target, per database (jobs.attempts).
    checkpoint: dict[str, DatabaseCheckpoint] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """What the worker runs: argv, environment to add, what to write to its stdin, and the
    strings to redact from its output. Secrets go to stdin, never to the environment: a
    process's initial environment stays readable in /proc/PID/environ for its whole life."""

    argv: list[str]
    env: dict[str, str] = field(repr=False)
    secrets: list[str] = field(repr=False)
    stdin: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ParsedLine:
    """One output line, redacted, with the progress it reports (if any) and whether it is an error."""

    log: str
    progress: Progress | None = None
    is_error: bool = False
    # A target database's new checkpoint entry: (database, entry).
    checkpoint: tuple[str, DatabaseCheckpoint] | None = None


class OutputParser(Protocol):
    def parse_line(self, line: str) -> ParsedLine: ...


class Engine(Protocol):
    name: str

    def invocation(self, job: EngineJob) -> Invocation: ...

    def parser(self, invocation: Invocation) -> OutputParser: ...

    def exit_message(self, code: int) -> str:
        """What a non-zero exit code means, for the job's error."""
        ...


def job_secrets(job: EngineJob) -> list[str]:
    """The URLs and the passwords in them, as they may be echoed by tools."""
    secrets = [job.source_url, job.target_url]
    for raw in (job.source_url, job.target_url):
        password = parse_url(raw).password
        if password:
            secrets.append(password)
    return secrets


def clip(message: str) -> str:
    return message[:MAX_MESSAGE_LENGTH]


_ERROR_WORDS = re.compile(r"\b(ERROR|FATAL|PANIC|error:|fatal:|Error:|Traceback)")


def looks_like_error(line: str) -> bool:
    return bool(_ERROR_WORDS.search(line))


def summarize_failure(lines: Iterable[ParsedLine | str], secrets: Iterable[str] = ()) -> str:
    """A short redacted summary for the job's `error`: the last error lines, else the last lines."""
    parsed = [item if isinstance(item, ParsedLine) else ParsedLine(log=item) for item in lines]
    texts = [p.log.strip() for p in parsed if p.log.strip()]
    # The lines the engine's parser knows for errors first: other lines that merely look
    # like errors may be text the source wrote (a server's message, a tool's output).
    errors = [p.log.strip() for p in parsed if p.log.strip() and p.is_error] or [
        text for text in texts if looks_like_error(text)
    ]
    chosen = (errors or texts)[-SUMMARY_LINES:]
    if not chosen:
        return "the engine failed without output"
    summary = redact(" | ".join(chosen), list(secrets))
    return summary[:MAX_SUMMARY_LENGTH]
