"""Write what Terraform takes from the code, so that the two cannot drift apart.

- `terraform/generated/launcher_filters.json`: the launcher's event source mapping filter
  patterns (services/launcher/filters.py, the same ones the local cloud's poller applies).
- `terraform/generated/api_routes.json`: the HTTP API route keys ("POST /jobs", ...), from
  the API's route table (services/api/routes.py).
- `terraform/generated/public_ipv4_cidrs.json`: the workers' default database egress: all of
  IPv4 but the ranges a VPC may use for itself (jobs/policy.py `VPC_ASSIGNABLE_NETWORKS`).

Run `python -m build_tools.generate` after changing either; tests/infra fails until then.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED_DIR = ROOT / "terraform" / "generated"


def launcher_filter_patterns() -> list[dict[str, object]]:
    from services.launcher.filters import FILTER_PATTERNS

    return [json.loads(pattern) for pattern in FILTER_PATTERNS]


def api_route_keys() -> list[str]:
    """Route keys in API Gateway's syntax, from the table the API registers its routes from."""
    from services.api.routes import ROUTES

    return sorted(route.key for route in ROUTES)


def public_ipv4_cidrs() -> list[str]:
    from jobs.policy import VPC_ASSIGNABLE_NETWORKS

    remaining = [ipaddress.IPv4Network("0.0.0.0/0")]
    for excluded in VPC_ASSIGNABLE_NETWORKS:
        if not isinstance(excluded, ipaddress.IPv4Network):
            continue
        remaining = [part for network in remaining for part in _without(network, excluded)]
    return [str(network) for network in sorted(remaining)]


def _without(network: ipaddress.IPv4Network, excluded: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    if network.subnet_of(excluded):
        return []
    if excluded.subnet_of(network):
        return list(network.address_exclude(excluded))
    return [network]


def generated_files() -> dict[str, str]:
    """File name -> content, as `main` writes them."""
    return {
        "launcher_filters.json": _dump(launcher_filter_patterns()),
        "api_routes.json": _dump(api_route_keys()),
        "public_ipv4_cidrs.json": _dump(public_ipv4_cidrs()),
    }


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def main() -> None:
    GENERATED_DIR.mkdir(parents=True, exist_ok=True)
    for name, content in generated_files().items():
        path = GENERATED_DIR / name
        path.write_text(content)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
