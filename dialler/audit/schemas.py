from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_agent_id: int | None
    action: str
    subject_type: str | None
    subject_id: str | None
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]

    @field_validator("client_ip", mode="before")
    @classmethod
    def _ip_as_text(cls, value: object) -> str | None:
        return None if value is None else str(value)  # asyncpg returns INET as ipaddress objects


class AuditEntryPage(BaseModel):
    items: list[AuditEntryRead]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last page."
    )
