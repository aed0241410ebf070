"""The pg engine's commands, one module each: init, verify, validate, sync, status.

Each raises `EngineError` with a message fit for the job's error; nothing here prints a
credential (the emitter redacts as a second line of defence).
"""

from __future__ import annotations

from collections.abc import Callable

from jobs.spec import Command
from worker.engines.pg.commands.init import init
from worker.engines.pg.commands.status import status
from worker.engines.pg.commands.sync import sync
from worker.engines.pg.commands.validate import validate
from worker.engines.pg.commands.verify import verify
from worker.engines.pg.context import Context, default_workers

HANDLERS: dict[Command, Callable[[Context], None]] = {
    Command.INIT: init,
    Command.VERIFY: verify,
    Command.VALIDATE: validate,
    Command.SYNC: sync,
    Command.STATUS: status,
}


def run(command: Command, ctx: Context) -> None:
    HANDLERS[command](ctx)


__all__ = ["Context", "default_workers", "run"]
