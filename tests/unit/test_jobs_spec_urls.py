"""The job spec and connection URLs: what is accepted, what is refused, and that refusals
never repeat credentials."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from jobs.spec import MAX_FILTER_ITEMS, Command, JobFilter, JobOptions, JobSpec, engine_log_level
from jobs.urls import MAX_URL_LENGTH, InvalidUrl, parse_url
from worker.engines.base import EngineJob
from worker.engines.pg.events import Emitter
from worker.engines.replicator import ReplicatorEngine

PASSWORD = "s3cret-test-pw"
URL = f"postgresql://user:{PASSWORD}@db.example.com:5432/shop"


def _spec(**changes: Any) -> dict[str, Any]:
    return {"command": "init", "source_url": URL, "target_url": URL, **changes}


def test_missing_schema_version_means_1_0_and_commands_are_lowercased() -> None:
    spec = JobSpec.model_validate(_spec(command="SyNc"))
    assert spec.schema_version == "1.0" and spec.command == "sync"
    assert spec.filter == JobFilter() and spec.options.enable_sync is True


def test_null_filter_and_options_are_empty() -> None:
    spec = JobSpec.model_validate(_spec(filter=None, options=None))
    assert spec.filter == JobFilter()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"options": {"unknown": 1}}, "unknown"),
        ({"options": {"enable_sync": "true"}}, "enable_sync"),
        ({"options": {"estimated_size_bytes": -1}}, "estimated_size_bytes"),
        ({"options": {"log_level": "info;loud"}}, "log_level"),
        ({"filter": {"include_tables": ["no_dot"]}}, "include_tables"),
        ({"filter": {"exclude_databases": ["x"] * (MAX_FILTER_ITEMS + 1)}}, "exclude_databases"),
        ({"command": "rm"}, "command"),
    ],
)
def test_strict_fields_name_the_offender(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(_spec(**changes))
    assert any(field in ".".join(map(str, e["loc"])) for e in caught.value.errors())


def test_url_parts_and_redaction() -> None:
    url = parse_url("postgres://us%40er:p%3Aw%2F%40@DB.Example.com:6543/my_db?sslmode=require")
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "us@er",
        "p:w/@",
        "db.example.com",
        6543,
        "my_db",
    )
    assert url.redacted == "postgresql://db.example.com:6543/my_db"
    assert parse_url("postgresql://h/db").port == 5432


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "mysql://h/db",
        "postgresql://h",
        "postgresql://h/",
        "postgresql://h:0/db",
        "postgresql://h:65536/db",
        "postgresql://h:port/db",
        "postgresql://u:p@x@h/db",
        "postgresql://u:p@h/db;select",
        "postgresql://u:p@h/db$(reboot)",
        "postgresql://u:p w@h/db",
        "postgresql://u:p@h/db?options=-c",
        "postgresql://u:p@h/1db",
        "postgresql://u:p@-h/db",
        "postgresql://" + "a" * MAX_URL_LENGTH + "/db",
    ],
)
def test_bad_urls_are_refused(raw: str) -> None:
    with pytest.raises(InvalidUrl):
        parse_url(raw, field="source_url")


@settings(max_examples=200, deadline=None)
@given(password=st.text(min_size=1, max_size=40))
def test_any_password_is_accepted_once_percent_encoded(password: str) -> None:
    url = parse_url(f"postgresql://user:{quote(password, safe='')}@db.example.com/shop")
    assert url.password == password
    assert password not in url.redacted or password in "postgresql://db.example.com:5432/shop"


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=200))
def test_refusals_never_repeat_the_url(raw: str) -> None:
    text = f"postgresql://user:{PASSWORD}{raw}"
    try:
        parse_url(text)
    except InvalidUrl as exc:
        assert PASSWORD not in str(exc)


@pytest.mark.parametrize(
    ("log_filter", "overall"),
    [
        ("info", "info"),
        ("OFF", "off"),
        ("", "info"),
        ("database_replicator=debug", "debug"),
        ("database_replicator::commands=trace", "trace"),
        ("info,tokio_postgres=warn", "info"),
        ("tokio_postgres=warn", "info"),
        ("warn,database_replicator=debug,error", "error"),
        ("database_replicator", "trace"),
    ],
)
def test_a_log_filter_gives_engines_without_targets_one_level(log_filter: str, overall: str) -> None:
    assert engine_log_level(log_filter) == overall


def test_the_replicator_gets_the_filter_as_rust_log_and_the_pg_engine_prints_from_its_level() -> None:
    job = EngineJob(
        command=Command.VERIFY,
        source_url=URL,
        target_url=URL,
        options=JobOptions(log_level="info,tokio_postgres=warn"),
    )
    assert ReplicatorEngine().invocation(job).env["RUST_LOG"] == "info,tokio_postgres=warn"
    err = io.StringIO()
    emit = Emitter(err=err, level=JobOptions(log_level="off").engine_log_level)
    emit.info("quiet")
    emit.warn("quiet too")
    emit.error("always shown")
    assert err.getvalue() == "ERROR: always shown\n"
