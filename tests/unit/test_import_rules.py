"""The import rules of docs/architecture.md ("Packages and the imports they may make"),
read from the source: every import statement, at any depth, of every project module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Component -> the components its modules may import (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "jobs": frozenset({"jobs"}),
    "control_plane": frozenset({"jobs", "control_plane"}),
    "services.api": frozenset({"jobs", "services.api"}),
    "services.launcher": frozenset({"jobs", "control_plane", "services.launcher"}),
    "services.reaper": frozenset({"jobs", "control_plane", "services.reaper"}),
    "worker": frozenset({"jobs", "worker"}),
    # The local cloud plays AWS around the services: it reads their contracts (filters, schedule).
    "local_cloud": frozenset(
        {"jobs", "control_plane", "services.api", "services.launcher", "services.reaper", "local_cloud"}
    ),
    "cli": frozenset({"jobs", "local_cloud", "cli"}),
    "build_tools": frozenset(
        {
            "jobs",
            "control_plane",
            "services.api",
            "services.launcher",
            "services.reaper",
            "worker",
            "build_tools",
        }
    ),
}
# The job's models: plain Python, no AWS SDK and none of the data-access modules.
MODELS = (
    "spec",
    "urls",
    "policy",
    "states",
    "record",
    "progress",
    "reports",
    "worker_identity",
    "redact",
    "clock",
    "dynamo_values",
    "attempts",
)
AWS_SDK = ("boto3", "botocore")


def component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ALLOWED or parts[0] in ("services", "tests") else None


def modules() -> Iterator[tuple[str, Path]]:
    for top in {name.split(".")[0] for name in ALLOWED}:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_rules_see_every_component() -> None:
    found = {component(name) for name, _ in modules()}
    assert set(ALLOWED) <= found


@pytest.mark.parametrize("name,path", list(modules()), ids=lambda value: str(value))
def test_each_module_imports_only_what_its_component_may(name: str, path: Path) -> None:
    own = component(name)
    if own not in ALLOWED:
        return  # a package's bare __init__ (services)
    for imported in imports(path):
        other = component(imported)
        if other is not None and other != "services":
            assert other in ALLOWED[own], (
                f"{name} imports {imported}: {own} may import only {sorted(ALLOWED[own])}"
            )


@pytest.mark.parametrize("model", MODELS)
def test_the_job_models_use_no_aws(model: str) -> None:
    for imported in imports(ROOT / "jobs" / f"{model}.py"):
        assert imported.split(".")[0] not in AWS_SDK, f"jobs.{model} imports {imported}"
        if imported.startswith("jobs."):
            assert imported.split(".")[1] in MODELS, f"jobs.{model} imports data access: {imported}"
