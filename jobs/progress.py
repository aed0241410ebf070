"""Progress of a running job, as stored in the item and shown by the API. No AWS imports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_LENGTH = 500


class Progress(BaseModel):
    """The upstream contract's four fields, plus what newer clients show when known."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(default="", max_length=MAX_MESSAGE_LENGTH)
    current_database: str | None = None
    databases_completed: int = 0
    databases_total: int = 0
    phase: str | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
    tables_completed: int | None = None
    tables_total: int | None = None
    bytes_copied: int | None = None

    @classmethod
    def message_only(cls, message: str) -> Progress:
        return cls(message=message[:MAX_MESSAGE_LENGTH])
