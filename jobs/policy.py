"""Where jobs may connect. Plain Python: the API checks host names as given, the worker
re-checks the addresses they resolve to before connecting."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# The instance metadata service is never a valid database, whatever the configuration.
METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
LINK_LOCAL_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
PRIVATE_NETWORKS = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"),
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class HostNotAllowed(ValueError):
    """The host is outside the policy; the message names the rule, not the credentials."""


@dataclass(frozen=True)
class ConnectionPolicy:
    # Empty tuple: any public target host. Otherwise the target's host must end in one of these.
    allowed_target_suffixes: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    allow_link_local: bool = False
    # Private networks that are allowed even when allow_private is off (the operator's VPC).
    allowed_networks: tuple[str, ...] = field(default=())

    def check_host(self, host: str, *, role: str) -> None:
        """Check a host as the user wrote it. `role` is "source" or "target"."""
        name = host.lower().rstrip(".")
        if role == "target" and self.allowed_target_suffixes and not any(
            name == suffix or name.endswith("." + suffix)
            for suffix in (s.lower().lstrip(".") for s in self.allowed_target_suffixes)
        ):
            raise HostNotAllowed(
                f"{role} host is not allowed: targets must be under {', '.join(self.allowed_target_suffixes)}"
            )
        if name in LOOPBACK_NAMES:
            if not self.allow_loopback:
                raise HostNotAllowed(f"{role} host is not allowed: loopback addresses are denied")
            return
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return  # a DNS name: its addresses are checked by the worker after resolution
        self.check_address(address, role=role)

    def check_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, role: str) -> None:
        """Check one resolved address."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in METADATA_NETWORKS):
            raise HostNotAllowed(f"{role} host is not allowed: the instance metadata service is denied")
        if any(address in net for net in LINK_LOCAL_NETWORKS) and not self.allow_link_local:
            raise HostNotAllowed(f"{role} host is not allowed: link-local addresses are denied")
        if any(address in net for net in LOOPBACK_NETWORKS) and not self.allow_loopback:
            raise HostNotAllowed(f"{role} host is not allowed: loopback addresses are denied")
        if any(address in net for net in PRIVATE_NETWORKS) and not self._private_allowed(address):
            raise HostNotAllowed(f"{role} host is not allowed: private addresses are denied")
        if address.is_multicast or address.is_unspecified or address.is_reserved:
            raise HostNotAllowed(f"{role} host is not allowed: not a unicast address")

    def _private_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self.allow_private or any(
            address in ipaddress.ip_network(net, strict=False) for net in self.allowed_networks
        )

    def check_resolved(self, host: str, addresses: list[str], *, role: str) -> None:
        """The worker's check: the host as written, then every address it resolved to."""
        self.check_host(host, role=role)
        if not addresses:
            raise HostNotAllowed(f"{role} host did not resolve")
        for text in addresses:
            self.check_address(ipaddress.ip_address(text), role=role)
