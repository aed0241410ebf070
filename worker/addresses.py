"""Resolve each database host once, check every address, and connect to a checked one only.

A name resolved again later (by the engine, its client tools or, for `sync`, the target
server's subscription) could answer differently: a short-TTL name passes the check with a
public address and then points inside the VPC. So the address checked here is handed to
everything that connects, as libpq's `hostaddr`, and the name is kept only for TLS.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from jobs.policy import ConnectionPolicy
from jobs.urls import ConnectionUrl

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address of `host`, in the resolver's order of preference, without repeats."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in answers))


def pin(
    url: ConnectionUrl, policy: ConnectionPolicy, *, role: str, resolve: Resolver = system_resolver
) -> ConnectionUrl:
    """`url` bound to its first address, after every address it resolved to passed the policy."""
    addresses = resolve(url.host, url.port)
    policy.check_resolved(url.host, addresses, role=role)
    return url.at_address(addresses[0])
