"""The compliance desk's API shapes: review items, customer flags, do-not-call entries, recordings."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from dialler.agents.schemas import CleanStr


class ReviewItemRead(BaseModel):
    id: int
    kind: str
    user_id: int
    call_session_id: UUID | None
    agent_id: int | None = Field(description="The agent who recorded the outcome.")
    disposition: str | None
    notes: str | None = Field(description="The agent's notes on the outcome.")
    status: str = Field(description="open | in_progress | closed")
    assignee_agent_id: int | None
    created_at: datetime
    acknowledge_due_at: datetime | None = Field(description="Complaints: DISP 1.6 prompt acknowledgement.")
    final_response_due_at: datetime | None = Field(description="Complaints: DISP 1.6 final response, 8 weeks.")
    acknowledged_at: datetime | None
    resolution: str | None
    resolved_at: datetime | None
    resolved_by_agent_id: int | None
    final_response_overdue: bool = Field(description="Open past its final-response deadline.")


class ReviewItemPage(BaseModel):
    items: list[ReviewItemRead]
    next_before_id: int | None = Field(description="Pass as `before_id` for the next (older) page.")


class ReviewAssign(BaseModel):
    assignee_agent_id: int = Field(ge=1, le=2**63 - 1)


class ReviewResolve(BaseModel):
    resolution: CleanStr = Field(min_length=1, max_length=4000)


class VulnerableFlagRead(BaseModel):
    user_id: int
    vulnerable: bool = Field(description="The dialler's own flag stands (the replica's status counts too).")
    source: str | None = Field(description="agent (an outcome) | compliance")
    set_at: datetime | None
    set_by_agent_id: int | None
    cleared_at: datetime | None
    cleared_by_agent_id: int | None


class VulnerableFlagWrite(BaseModel):
    vulnerable: bool
    reason: CleanStr = Field(min_length=1, max_length=2000)
