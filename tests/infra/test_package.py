"""Packaging: the zips hold what each handler needs, built for the Lambda runtime, and
the same inputs give the same bytes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from build_tools import package


def _runtime_python() -> Path | None:
    """A python3.12 that runs (a pyenv shim may exist without its version being active)."""
    if sys.version_info[:2] == (3, 12):
        return Path(sys.executable)
    installed = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    candidates = [shutil.which("python3.12"), *installed]
    for candidate in filter(None, candidates):
        if subprocess.run([str(candidate), "-c", ""], capture_output=True, check=False).returncode == 0:
            return Path(candidate)
    return None


RUNTIME_PYTHON = _runtime_python()
FAKE_ENVIRONMENT = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_LAMBDA_FUNCTION_NAME": "package-test",
    "JOBS_TABLE_NAME": "jobs-test",
    "API_KEYS_TABLE_NAME": "api-keys-test",
    "KMS_KEY_ID": "alias/test",
    "REQUEST_MAC_KEY_ID": "alias/test-mac",
    "WORKER_LOG_GROUP": "/test/workers",
    "LAUNCH_TEMPLATE_ID": "lt-0123456789abcdef0",
    "WORKER_ROLE_ID": "AROATESTWORKERROLE00",
    "POWERTOOLS_METRICS_NAMESPACE": "Test",
    "POWERTOOLS_SERVICE_NAME": "test",
    "POWERTOOLS_TRACE_DISABLED": "true",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(RUNTIME_PYTHON is None, reason="python3.12 of the Lambda runtime not installed"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[package.BuiltZip]:
    return package.build(tmp_path_factory.mktemp("build"), architecture="x86_64", python_version="3.12")


@pytest.fixture(scope="module")
def runtime_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3 and its dependencies, standing in for what the Lambda runtime provides."""
    target = tmp_path_factory.mktemp("runtime-sdk")
    package.install_dependencies(package.aws_sdk_requirements("3.12", "x86_64"), target, "3.12", "x86_64")
    return target


def test_one_zip_per_function_under_the_size_target(built: list[package.BuiltZip]) -> None:
    assert {z.function for z in built} == {"api", "launcher", "reaper"}
    for z in built:
        assert 0 < z.size < package.MAX_ZIP_BYTES
        assert z.path.name == f"{z.function}.zip"


def test_zips_hold_the_handler_its_code_and_linux_x86_64_wheels_without_the_aws_sdk(
    built: list[package.BuiltZip],
) -> None:
    for z in built:
        names = zipfile.ZipFile(z.path).namelist()
        assert names == sorted(names)
        assert f"services/{z.function}/handler.py" in names
        assert "jobs/store.py" in names
        assert any(n.startswith("aws_lambda_powertools/") for n in names)
        assert any(n.startswith("pydantic_core/") and "x86_64-linux-gnu" in n for n in names)
        assert not any(n.startswith(("boto3/", "botocore/")) for n in names)
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert not any(n.startswith(("tests/", "local_cloud/", "worker/")) for n in names)
        for info in zipfile.ZipFile(z.path).infolist():
            assert info.date_time == package.FIXED_DATE_TIME
            assert info.external_attr == package.FILE_MODE


def test_same_inputs_give_the_same_bytes(built: list[package.BuiltZip], tmp_path: Path) -> None:
    """A second build with its own fresh dependency install."""
    again = package.build(tmp_path, architecture="x86_64", python_version="3.12")
    assert {z.function: z.sha256 for z in again} == {z.function: z.sha256 for z in built}


@pytest.mark.parametrize("function", sorted(package.FUNCTIONS))
def test_handler_imports_from_the_unpacked_zip_in_a_clean_interpreter(
    built: list[package.BuiltZip], runtime_sdk: Path, tmp_path: Path, function: str
) -> None:
    (z,) = [z for z in built if z.function == function]
    task = tmp_path / "task"
    zipfile.ZipFile(z.path).extractall(task)
    # -S -E: no site-packages, no PYTHON* variables: only the zip and the runtime's SDK.
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import importlib; "
        f"module = importlib.import_module('{package.FUNCTIONS[function]}'); "
        "assert callable(module.lambda_handler); "
        "assert module.__file__.startswith(sys.argv[1]), module.__file__; "
        "import pydantic_core; assert pydantic_core.__file__.startswith(sys.argv[1]); print('ok')"
    )
    result = subprocess.run(
        [str(RUNTIME_PYTHON), "-S", "-E", "-c", script, str(task), str(runtime_sdk)],
        env={**FAKE_ENVIRONMENT, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
