"""The project modules a piece of code reaches through its imports (read from the source,
not executed): what a function's zip must hold, and what a principal's code can call."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("jobs", "control_plane", "services", "worker", "local_cloud", "cli")


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module or package, or None if there is none."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(module: str, path: Path) -> Iterable[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            yield base
            for alias in node.names:  # `from package import submodule`
                yield f"{base}.{alias.name}"


def reachable_modules(entries: Iterable[str], root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file of every project module the entries import, directly or not,
    with the packages that contain them (their __init__ runs on import)."""
    found: dict[str, Path] = {}
    pending = list(entries)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = module_path(name, root)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imported_names(name, path))
    return found


def package_modules(package: str, root: Path = ROOT) -> list[str]:
    """Every module of a project package (all of it runs, e.g. the worker)."""
    base = root.joinpath(*package.split("."))
    names = []
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names
