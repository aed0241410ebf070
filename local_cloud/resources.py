"""The tables of one deployment, created in moto from the definitions Terraform uses
(jobs/tables.py): for the local cloud's fast provisioning, tests and benches."""

from __future__ import annotations

from typing import Any

from jobs.tables import API_KEYS_TABLE, JOBS_TABLE, JOBS_TTL_ATTRIBUTE


def create_tables(dynamodb_client: Any, *, jobs_table: str, api_keys_table: str) -> None:
    """Create both tables as Terraform declares them."""
    dynamodb_client.create_table(TableName=jobs_table, **JOBS_TABLE)
    dynamodb_client.update_time_to_live(
        TableName=jobs_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": JOBS_TTL_ATTRIBUTE},
    )
    dynamodb_client.create_table(TableName=api_keys_table, **API_KEYS_TABLE)
