"""POST /jobs judges a host in every numeric form the resolver reads as an address by the
same rules as the worker: refused before an item is written or an instance paid for."""

from __future__ import annotations

import pytest

from tests.support.api import TARGET_URL, V1_BODY, ApiWorld


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("2852039166", "metadata"),
        ("0xa9fea9fe", "metadata"),
        # A trailing dot is the root of DNS: the resolver still reads the literal.
        ("169.254.169.254.", "metadata"),
        ("0251.0376.0251.0376", "metadata"),
        ("127.1", "loopback"),
        ("0", "special-purpose"),
        ("198.18.0.1", "special-purpose"),
        ("192.0.0.170", "special-purpose"),
        ("[2002:a9fe:a9fe::1]", "special-purpose"),
        ("[2001::1]", "special-purpose"),
        ("[fec0::1]", "special-purpose"),
    ],
)
def test_numeric_and_special_hosts_are_400_and_write_nothing(world: ApiWorld, host: str, rule: str) -> None:
    source = f"postgresql://u:p@{host}:5432/db"
    answer = world.alice.submit({**V1_BODY, "source_url": source, "target_url": TARGET_URL})
    assert answer.status == 400, answer.body
    assert rule in answer.body["error"]
    assert world.dynamodb.scan(TableName="test-jobs")["Items"] == []
