"""Build one Lambda zip per function: the project code its handler reaches, plus the locked
third-party dependencies as wheels for the function's runtime Python and architecture.

    python -m build_tools.package [--arch arm64|x86_64] [--python-version 3.12] [--out build]

- Locked: the versions are the ones installed in this environment (the ones the tests ran
  with), for the closure of pyproject's runtime dependencies.
- Wheels only, for the target (`pip install --platform manylinux2014_<arch>
  --only-binary=:all: --python-version ...`): nothing is compiled on this machine.
- boto3 and what it pulls in (botocore, s3transfer, jmespath, urllib3, python-dateutil,
  six) are left out: the Lambda Python runtime provides them, and the code only uses APIs
  that the runtime's boto3 has had since before python3.12 runtimes existed (see
  terraform/README.md). `--include-aws-sdk` puts them in anyway.
- Reproducible: entries sorted, fixed timestamps and permissions, no bytecode, no pip
  RECORD files or scripts (they embed paths of this machine): the same inputs give the
  same bytes. The sha256 and size of each zip are printed and written to
  <out>/package-manifest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from build_tools.modules import ROOT, reachable_modules

FUNCTIONS = {
    "api": "services.api.handler",
    "launcher": "services.launcher.handler",
    "reaper": "services.reaper.handler",
}
ARCHITECTURES = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
RUNTIME_PROVIDED_ROOT = "boto3"
MAX_ZIP_BYTES = 25 * 1024 * 1024
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644 << 16
_EXCLUDED_PARTS = ("__pycache__",)
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class BuiltZip:
    function: str
    path: Path
    sha256: str
    size: int


def _project_requirements() -> list[Requirement]:
    dependencies = metadata.requires("seren-remote-replication") or []
    return [Requirement(r) for r in dependencies if "extra ==" not in r]


def _target_environment(python_version: str, architecture: str) -> dict[str, str]:
    environment = dict(default_environment())
    environment.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=MACHINES[architecture],
    )
    return environment


def _closure(roots: Iterable[Requirement], environment: dict[str, str]) -> dict[str, str]:
    """Canonical name -> installed version of the roots and everything they require."""
    pinned: dict[str, str] = {}
    pending = [(r, frozenset(r.extras)) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        pinned[name] = metadata.version(requirement.name)
        for raw in metadata.requires(requirement.name) or []:
            child = Requirement(raw)
            wanted = any(
                child.marker is None or child.marker.evaluate({**environment, "extra": extra})
                for extra in (extras or {""})
            )
            if wanted:
                pending.append((child, frozenset(child.extras)))
    return pinned


def locked_requirements(python_version: str, architecture: str, *, include_aws_sdk: bool) -> list[str]:
    """`name==version` lines of the dependencies to put in the zips."""
    environment = _target_environment(python_version, architecture)
    pinned = _closure(_project_requirements(), environment)
    if not include_aws_sdk:
        for name in _closure([Requirement(RUNTIME_PROVIDED_ROOT)], environment):
            pinned.pop(name, None)
    return sorted(f"{name}=={version}" for name, version in pinned.items())


def aws_sdk_requirements(python_version: str, architecture: str) -> list[str]:
    """`name==version` lines of what the Lambda runtime provides and the zips leave out."""
    pinned = _closure([Requirement(RUNTIME_PROVIDED_ROOT)], _target_environment(python_version, architecture))
    return sorted(f"{name}=={version}" for name, version in pinned.items())


def install_dependencies(
    requirements: list[str], target: Path, python_version: str, architecture: str
) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as lock:
        lock.write("\n".join(requirements) + "\n")
    try:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--target", str(target),
                "--platform", ARCHITECTURES[architecture],
                "--implementation", "cp",
                "--python-version", python_version,
                "--only-binary=:all:",
                "--no-deps", "--no-compile",
                "--requirement", lock.name,
            ],
            check=True,
        )  # fmt: skip
    finally:
        Path(lock.name).unlink()


def dependency_dir(out: Path, requirements: list[str], python_version: str, architecture: str) -> Path:
    """Dependencies installed once per (lock, Python, architecture), shared by the zips."""
    digest = hashlib.sha256("\n".join([python_version, architecture, *requirements]).encode()).hexdigest()[
        :16
    ]
    target = out / ".deps" / f"py{python_version}-{architecture}-{digest}"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        install_dependencies(requirements, target, python_version, architecture)
        (target / ".complete").touch()
    return target


def _dependency_files(deps: Path) -> Iterator[tuple[str, Path]]:
    for path in deps.rglob("*"):
        if not path.is_file() or path.name == ".complete":
            continue
        relative = path.relative_to(deps)
        if relative.parts[0] == "bin" or any(p in _EXCLUDED_PARTS for p in relative.parts):
            continue
        if path.suffix in _EXCLUDED_SUFFIXES:
            continue
        if relative.parts[0].endswith(".dist-info") and path.name in {"RECORD", "INSTALLER", "REQUESTED"}:
            continue
        yield relative.as_posix(), path


def _code_files(handler_module: str) -> Iterator[tuple[str, Path]]:
    for path in reachable_modules([handler_module]).values():
        yield path.relative_to(ROOT).as_posix(), path


def write_zip(destination: Path, files: dict[str, Path]) -> None:
    with zipfile.ZipFile(destination, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.external_attr = FILE_MODE
            info.create_system = 3  # Unix, so the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name].read_bytes(), compresslevel=9)


def build(
    out: Path,
    *,
    architecture: str = "arm64",
    python_version: str = "3.12",
    functions: Iterable[str] = FUNCTIONS,
    include_aws_sdk: bool = False,
) -> list[BuiltZip]:
    out.mkdir(parents=True, exist_ok=True)
    requirements = locked_requirements(python_version, architecture, include_aws_sdk=include_aws_sdk)
    deps = dependency_dir(out, requirements, python_version, architecture)
    dependency_files = dict(_dependency_files(deps))
    built = []
    for function in functions:
        files = {**dependency_files, **dict(_code_files(FUNCTIONS[function]))}
        destination = out / f"{function}.zip"
        write_zip(destination, files)
        data = destination.read_bytes()
        built.append(BuiltZip(function, destination, hashlib.sha256(data).hexdigest(), len(data)))
    manifest = {
        "architecture": architecture,
        "python_version": python_version,
        "requirements": requirements,
        "zips": {z.function: {"sha256": z.sha256, "size": z.size} for z in built},
    }
    (out / "package-manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="arm64")
    parser.add_argument("--python-version", default="3.12", type=_python_version)
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--function", action="append", choices=sorted(FUNCTIONS), dest="functions")
    parser.add_argument("--include-aws-sdk", action="store_true")
    args = parser.parse_args(argv)
    built = build(
        args.out,
        architecture=args.arch,
        python_version=args.python_version,
        functions=args.functions or list(FUNCTIONS),
        include_aws_sdk=args.include_aws_sdk,
    )
    too_big = False
    for z in built:
        print(f"{z.path}  sha256={z.sha256}  size={z.size} bytes ({z.size / 1024 / 1024:.1f} MiB)")
        too_big |= z.size > MAX_ZIP_BYTES
    if too_big:
        print(f"error: a zip exceeds {MAX_ZIP_BYTES // (1024 * 1024)} MiB", file=sys.stderr)
        return 1
    return 0


def _python_version(value: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", value):
        raise argparse.ArgumentTypeError("expected a version like 3.12")
    return value


if __name__ == "__main__":
    sys.exit(main())
