"""moto in server mode, in a child process: the local AWS endpoint for every service.

A child process rather than a thread: moto then has a core of its own, and it dies with
the stack even if the stack is killed (parent-death signal). moto's own Lambda execution
is switched off (its configuration API), and so is its delivery of stream records to mapped
functions (local_cloud/moto_main.py): the local cloud's drivers are the only invokers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PR_SET_PDEATHSIG = 1
MOTO_CONFIG: dict[str, object] = {"lambda": {"use_docker": False}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class MotoServer:
    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_seconds: float = 30) -> MotoServer:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "local_cloud.moto_main", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # called before any thread of the stack starts
            )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self._process.returncode}; see {self._log_path}"
                )
            try:
                # The local moto endpoint: a fixed loopback URL, not user input.
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"moto server did not start in {timeout_seconds:.0f} s; see {self._log_path}")
        self.configure(MOTO_CONFIG)
        return self

    def configure(self, config: dict[str, object]) -> dict[str, object]:
        """Change moto's behaviour through its configuration API; its whole configuration."""
        # The local moto endpoint: a fixed loopback URL, not user input.
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}/moto-api/config", data=json.dumps(config).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return dict(json.loads(answer.read()))

    def config(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/moto-api/config", timeout=5) as answer:  # noqa: S310
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
