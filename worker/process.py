"""The engine's process: started in its own session (so its whole process group can be
signalled), fed nothing on stdin, read line by line from a merged stdout/stderr.

Credentials reach it through its stdin (a pipe written once, then closed), never through its
environment, which /proc keeps readable for the process's whole life. The worker's AWS
settings are not passed on: the engine talks to databases, never to AWS. A second pipe
carries the worker's acknowledgements of the engine's checkpoints (`CHECKPOINT_ACK_FD`): an
engine that must not go on before its checkpoint is recorded waits for one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

from worker.engines.base import CHECKPOINT_ACK_FD

# Lines longer than this are cut (a runaway line must not grow the worker's memory).
MAX_LINE_BYTES = 64 * 1024


def engine_environment(extra: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**base, **extra}


class EngineProcess:
    """One running engine. `on_line` is called from a reader thread for every output line."""

    def __init__(
        self, argv: list[str], env: Mapping[str, str], on_line: Callable[[str], None], stdin: bytes = b""
    ) -> None:
        self._on_line = on_line
        ack_read, self._acks = os.pipe()
        # An engine that never reads its acknowledgements must not block the worker.
        os.set_blocking(self._acks, False)
        try:
            self._process = subprocess.Popen(
                argv,
                env={**engine_environment(env), CHECKPOINT_ACK_FD: str(ack_read)},
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=(ack_read,),
            )
        finally:
            os.close(ack_read)
        self.pid = self._process.pid
        if self._process.stdin is not None:
            # Far below a pipe's buffer (two URLs of at most 2 KiB and the job): no deadlock.
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.write(stdin)
            self._process.stdin.close()
        self._reader = threading.Thread(target=self._read, name="engine-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
            self._on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def acknowledge(self, checkpoint_events: int) -> None:
        """The engine's first `checkpoint_events` checkpoint events are recorded."""
        with contextlib.suppress(OSError):  # the engine is gone, or does not read them
            os.write(self._acks, f"{checkpoint_events}\n".encode())

    def exited(self) -> bool:
        """Whether the engine's main process has exited (it is left unreaped, so that its
        process group id cannot be reused before `finish` kills any leftover children)."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def finish(self, output_timeout: float = 10.0) -> int:
        """Reap the exited engine, kill whatever it left running, drain its output.

        Returns the exit code (negative: killed by that signal)."""
        self._signal_group(signal.SIGKILL)
        code = self._process.wait()
        self._reader.join(output_timeout)
        with contextlib.suppress(OSError):  # closed by an earlier finish
            os.close(self._acks)
        return code

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM to the whole group; SIGKILL to it after `grace_seconds`. Returns the exit code."""
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while not self.exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.finish()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
