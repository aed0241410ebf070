"""DNS rebinding: a name that answers a public address to the check and an internal one to
the connection. The worker asks once, checks every answer, and hands the checked address on;
the engines connect there (tests/engines/test_pinned_addresses.py proves the pg engine's
connections never look the name up again)."""

from __future__ import annotations

import pytest

from jobs.crypto import Credentials
from jobs.policy import ConnectionPolicy, HostNotAllowed
from jobs.spec import Command
from worker.engines import EngineJob, ReplicatorEngine
from worker.engines.pg import PgEngine
from worker.worker import checked_addresses

PUBLIC, INTERNAL = "52.1.2.3", "10.0.3.7"
CREDENTIALS = Credentials(
    source_url="postgresql://u:s3cret-test-pw@rebind.example.com:5432/shop",
    target_url="postgresql://u:s3cret-test-pw@db.example.net:5432/shop",
)


class RebindingResolver:
    """First answer public, every later one internal, as a short-TTL name does."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [PUBLIC] if self.calls.count(host) == 1 else [INTERNAL]


def test_each_host_is_resolved_once_and_the_checked_address_is_the_one_used() -> None:
    resolver = RebindingResolver()
    source, target = checked_addresses(CREDENTIALS, ConnectionPolicy(), resolver)
    assert (source, target) == (PUBLIC, PUBLIC)
    assert sorted(resolver.calls) == ["db.example.net", "rebind.example.com"]


def test_a_name_with_any_internal_answer_is_refused() -> None:
    with pytest.raises(HostNotAllowed, match="private"):
        checked_addresses(CREDENTIALS, ConnectionPolicy(), lambda host, port: [PUBLIC, INTERNAL])


def test_the_engines_are_given_the_checked_address() -> None:
    job = EngineJob(
        command=Command.STATUS,
        source_url=CREDENTIALS.source_url,
        target_url=CREDENTIALS.target_url,
        source_hostaddr=PUBLIC,
        target_hostaddr="2600:1f18::1",
    )
    argv = ReplicatorEngine().invocation(job).argv
    assert argv[argv.index("--source") + 1].endswith("/shop?hostaddr=52.1.2.3")
    assert argv[argv.index("--target") + 1].endswith("/shop?hostaddr=2600:1f18::1")
    stdin = PgEngine().invocation(job).stdin.decode()
    assert '"source_hostaddr": "52.1.2.3"' in stdin and '"target_hostaddr": "2600:1f18::1"' in stdin
