from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class RecordingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sid: str
    call_sid: str
    call_session_id: UUID | None
    user_id: int | None
    claim_ids: list[int]
    duration_s: int | None
    channels: int | None
    status: str
    created_at: datetime
    deleted_at: datetime | None = Field(description="Deleted at Twilio after its retention period.")
    media_url: str | None = Field(description="Play through the API (bearer token; Range supported).")


class RecordingList(BaseModel):
    items: list[RecordingRead]


class PlayLink(BaseModel):
    url: str = Field(description="A URL on this API for the browser's player; Range supported.")
    expires_in_s: int
