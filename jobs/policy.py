"""Where jobs may connect. Plain Python: the API checks hosts as given (names, and addresses
in every form the C library reads as one), the worker checks the addresses a name resolves
to and then connects to a checked address only (`jobs.resolve`).

The ranges follow the IANA IPv4 and IPv6 Special-Purpose Address Registries: everything
there that is not globally reachable, or that wraps another address a relay or translator
would reach for us (6to4, Teredo, IPv4-compatible), is refused; NAT64's well-known prefix is
judged by the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(text) for text in texts)


# The instance metadata service is never a valid database, whatever the configuration.
METADATA_NETWORKS = _networks("169.254.169.254/32", "fd00:ec2::254/128")
LINK_LOCAL_NETWORKS = _networks("169.254.0.0/16", "fe80::/10")
LOOPBACK_NETWORKS = _networks("127.0.0.0/8", "::1/128")
PRIVATE_NETWORKS = _networks(
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "fc00::/7",  # unique local
)
# What a VPC may number itself from: the workers' security group allows none of it by default.
VPC_ASSIGNABLE_NETWORKS = (*PRIVATE_NETWORKS, ipaddress.ip_network("198.18.0.0/15"))
# Never a database we may reach, whatever the switches say.
SPECIAL_NETWORKS = _networks(
    "0.0.0.0/8",  # "this network"
    "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, PCP, TURN)
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast address
    "::/96",  # unspecified and IPv4-compatible (deprecated)
    "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
    "100::/64",  # discard-only
    "100:0:0:1::/64",  # dummy prefix
    "2001::/23",  # IETF protocol assignments: Teredo (2001::/32), benchmarking, ORCHID, ...
    "2001:db8::/32",  # documentation
    "2002::/16",  # 6to4: wraps an IPv4 address
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing (SRv6) SIDs
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class HostNotAllowed(ValueError):
    """The host is outside the policy; the message names the rule, not the credentials."""


def numeric_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `text` denotes in any form inet_aton(3) accepts (and so the
    resolver, without asking DNS): one to four parts, each decimal, octal (leading 0)
    or hex (0x), the last filling the remaining bytes: `2852039166`, `0xa9fea9fe`,
    `0251.0376.0251.0376`, `127.1`, `0`. None when it is not such a form."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        lowered = part.lower()
        if lowered.startswith("0x"):
            digits, base = lowered[2:], 16
        elif lowered.startswith("0") and len(lowered) > 1:
            digits, base = lowered[1:], 8
        else:
            digits, base = lowered, 10
        if not digits or any(ch not in "0123456789abcdef"[:base] for ch in digits):
            return None
        values.append(int(digits, base))
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> Address | None:
    """The address a host names without DNS, or None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return numeric_ipv4(host)


@dataclass(frozen=True)
class ConnectionPolicy:
    # Empty tuple: any public target host. Otherwise the target's host must end in one of these.
    allowed_target_suffixes: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False

    def check_host(self, host: str, *, role: str) -> None:
        """Check a host as the user wrote it. `role` is "source" or "target"."""
        name = host.lower().rstrip(".")
        if (
            role == "target"
            and self.allowed_target_suffixes
            and not any(
                name == suffix or name.endswith("." + suffix)
                for suffix in (s.lower().lstrip(".") for s in self.allowed_target_suffixes)
            )
        ):
            raise HostNotAllowed(
                f"{role} host is not allowed: targets must be under {', '.join(self.allowed_target_suffixes)}"
            )
        if name in LOOPBACK_NAMES or name.endswith(".localhost"):
            if not self.allow_loopback:
                raise HostNotAllowed(f"{role} host is not allowed: loopback addresses are denied")
            return
        # "169.254.169.254." (the root's trailing dot) is still that literal to the resolver.
        address = literal_address(name)
        if address is not None:
            self.check_address(address, role=role)
        # Otherwise a DNS name: the worker checks what it resolves to, and connects there only.

    def check_address(self, address: Address, *, role: str) -> None:
        """Check one resolved address."""
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            elif address in NAT64_WELL_KNOWN:
                # A NAT64 gateway would reach the IPv4 address in the last 32 bits.
                address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if any(address in net for net in METADATA_NETWORKS):
            raise HostNotAllowed(f"{role} host is not allowed: the instance metadata service is denied")
        if any(address in net for net in LINK_LOCAL_NETWORKS):
            if self.allow_link_local:
                return
            raise HostNotAllowed(f"{role} host is not allowed: link-local addresses are denied")
        if any(address in net for net in LOOPBACK_NETWORKS):
            if self.allow_loopback:
                return
            raise HostNotAllowed(f"{role} host is not allowed: loopback addresses are denied")
        if any(address in net for net in SPECIAL_NETWORKS) or address.is_multicast or address.is_reserved:
            raise HostNotAllowed(f"{role} host is not allowed: a special-purpose address, not a database's")
        if any(address in net for net in PRIVATE_NETWORKS) and not self.allow_private:
            raise HostNotAllowed(f"{role} host is not allowed: private addresses are denied")

    def check_resolved(self, host: str, addresses: list[str], *, role: str) -> None:
        """The worker's check: the host as written, then every address it resolved to."""
        self.check_host(host, role=role)
        if not addresses:
            raise HostNotAllowed(f"{role} host did not resolve")
        for text in addresses:
            self.check_address(ipaddress.ip_address(text), role=role)
