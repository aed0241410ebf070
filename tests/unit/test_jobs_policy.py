"""Host policy: suffix allow-list for targets; metadata, link-local, loopback and private
ranges denied unless configured."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.policy import ConnectionPolicy, HostNotAllowed

STRICT = ConnectionPolicy(allowed_target_suffixes=("serendb.com",))


@pytest.mark.parametrize("host", ["db.serendb.com", "serendb.com", "a.b.serendb.com.", "DB.SERENDB.COM"])
def test_targets_under_the_suffix_are_allowed(host: str) -> None:
    STRICT.check_host(host, role="target")


@pytest.mark.parametrize("host", ["evilserendb.com", "serendb.com.evil.net", "db.example.com", "10.0.0.1"])
def test_other_targets_are_refused_naming_the_suffix(host: str) -> None:
    with pytest.raises(HostNotAllowed, match=r"serendb\.com"):
        STRICT.check_host(host, role="target")


def test_sources_are_not_bound_by_the_target_suffix() -> None:
    STRICT.check_host("db.example.com", role="source")


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("localhost", "loopback"),
        ("10.2.3.4", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
    ],
)
def test_denied_ranges_name_their_rule(host: str, rule: str) -> None:
    with pytest.raises(HostNotAllowed, match=rule):
        ConnectionPolicy().check_host(host, role="source")


def test_switches_allow_loopback_and_private_but_never_metadata() -> None:
    relaxed = ConnectionPolicy(allow_loopback=True, allow_private=True, allow_link_local=True)
    for host in ("127.0.0.1", "localhost", "10.0.0.5", "192.168.0.9"):
        relaxed.check_host(host, role="source")
    with pytest.raises(HostNotAllowed, match="metadata"):
        relaxed.check_host("169.254.169.254", role="source")


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="169.254.0.0/16"))
def test_every_private_or_link_local_address_is_refused(address: ipaddress.IPv4Address) -> None:
    with pytest.raises(HostNotAllowed):
        ConnectionPolicy().check_host(str(address), role="target")


def test_resolved_addresses_are_rechecked() -> None:
    with pytest.raises(HostNotAllowed, match="private"):
        STRICT.check_resolved("db.serendb.com", ["52.1.2.3", "10.0.0.7"], role="target")
    STRICT.check_resolved("db.serendb.com", ["52.1.2.3"], role="target")
