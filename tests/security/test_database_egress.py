"""The workers' security group reaches databases on public IPv4 ranges only, by default."""

from __future__ import annotations

import ipaddress
import json

import pytest
from terraform_config import TERRAFORM_DIR, attr, load

from jobs.policy import VPC_ASSIGNABLE_NETWORKS, ConnectionPolicy, HostNotAllowed


def _default_cidrs() -> list[ipaddress.IPv4Network]:
    text = (TERRAFORM_DIR / "generated" / "public_ipv4_cidrs.json").read_text()
    return [ipaddress.IPv4Network(c) for c in json.loads(text)]


def test_the_default_egress_is_the_generated_public_list() -> None:
    tf = load()
    assert attr(tf.variables["database_egress_cidrs"], "default") is None
    assert "generated/public_ipv4_cidrs.json" in tf.locals["database_egress_cidrs"]
    rule = tf.resources["aws_vpc_security_group_egress_rule"]["worker_postgresql"]
    assert "local.database_egress_cidrs" in attr(rule, "for_each")


def test_public_list_covers_all_of_ipv4_except_what_a_vpc_can_use() -> None:
    cidrs = _default_cidrs()
    vpc_ranges = [n for n in VPC_ASSIGNABLE_NETWORKS if isinstance(n, ipaddress.IPv4Network)]
    for cidr in cidrs:
        assert not any(cidr.overlaps(vpc) for vpc in vpc_ranges), cidr
    total = sum(c.num_addresses for c in cidrs) + sum(v.num_addresses for v in vpc_ranges)
    assert total == 2**32
    # One egress rule per range and port: within the default quota of 60 rules for one port.
    assert len(cidrs) < 60


def test_every_vpc_range_is_refused_by_the_application_too() -> None:
    for network in VPC_ASSIGNABLE_NETWORKS:
        for address in (network[1], network[-2]):
            with pytest.raises(HostNotAllowed):
                ConnectionPolicy().check_address(address, role="source")
