"""Host policy: suffix allow-list for targets; metadata, link-local, loopback and private
ranges denied unless configured."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.policy import ConnectionPolicy, HostNotAllowed, numeric_ipv4

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


# The forms inet_aton(3) reads as an address: the resolver takes them without asking DNS, so
# the API must judge them as the addresses they are (they used to pass as "DNS names").
@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("2852039166", "metadata"),
        ("0xa9fea9fe", "metadata"),
        ("0xA9FEA9FE", "metadata"),
        ("169.254.169.254.", "metadata"),
        ("127.0.0.1.", "loopback"),
        ("0251.0376.0251.0376", "metadata"),
        ("169.254.43518", "metadata"),
        ("127.1", "loopback"),
        ("0x7f.1", "loopback"),
        ("017700000001", "loopback"),
        ("0", "special-purpose"),
        ("10.1", "private"),
        ("012.0.0.1", "private"),
        ("app.localhost", "loopback"),
    ],
)
def test_numeric_host_forms_are_judged_as_their_address(host: str, rule: str) -> None:
    with pytest.raises(HostNotAllowed, match=rule):
        ConnectionPolicy().check_host(host, role="source")


@pytest.mark.parametrize("host", ["08", "1.2.3.256", "0x", "4294967296", "1..2", "1.2.3.4.5", "1e1", "db1"])
def test_names_that_are_not_numeric_forms_stay_names(host: str) -> None:
    assert numeric_ipv4(host) is None
    ConnectionPolicy().check_host(host, role="source")


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_numeric_forms_match_the_c_library(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert numeric_ipv4(text) == expected


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "192.0.0.8",
        "192.0.0.170",
        "192.0.2.1",
        "192.88.99.1",
        "198.18.0.1",
        "198.19.255.254",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "100::1",
        "2001::a9fe:a9fe",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:2::1",
        "2001:db8::1",
        "2002:a9fe:a9fe::1",
        "2002:0a00:0001::1",
        "3fff::1",
        "5f00::1",
        "fec0::1",
        "ff02::1",
    ],
)
def test_special_purpose_ranges_are_refused_even_when_everything_else_is_allowed(host: str) -> None:
    everything = ConnectionPolicy(allow_loopback=True, allow_private=True, allow_link_local=True)
    with pytest.raises(HostNotAllowed, match="special-purpose"):
        everything.check_host(host, role="source")


@pytest.mark.parametrize(
    ("host", "rule"),
    [("64:ff9b::a9fe:a9fe", "metadata"), ("64:ff9b::a00:1", "private"), ("64:ff9b::7f00:1", "loopback")],
)
def test_nat64_addresses_are_judged_by_the_ipv4_address_they_carry(host: str, rule: str) -> None:
    with pytest.raises(HostNotAllowed, match=rule):
        ConnectionPolicy().check_host(host, role="source")
    ConnectionPolicy().check_host("64:ff9b::3401:203", role="source")  # 52.1.2.3


@pytest.mark.parametrize("host", ["52.1.2.3", "2600:1f18::1", "8.8.8.8", "db.example.com"])
def test_public_addresses_pass(host: str) -> None:
    ConnectionPolicy().check_host(host, role="source")
