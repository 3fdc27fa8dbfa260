"""The compliance desk's API shapes: review items, customer flags, do-not-call entries, recordings."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

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


class DoNotCallRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    phone_e164: str
    user_id: int | None
    source: str = Field(description="tps | customer | agent | complaint")
    reason: str | None
    added_by_agent_id: int | None
    created_at: datetime


class DoNotCallPage(BaseModel):
    items: list[DoNotCallRead]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class DoNotCallAdd(BaseModel):
    phone: CleanStr = Field(min_length=1, max_length=40, description="The number in any usual UK form.")
    reason: CleanStr = Field(min_length=1, max_length=2000)
    source: str = Field(default="customer", pattern="^(customer|complaint)$")


class DoNotCallRemove(BaseModel):
    phone: CleanStr = Field(min_length=1, max_length=40)
    reason: CleanStr = Field(min_length=1, max_length=2000)


class DoNotCallChange(BaseModel):
    entry: DoNotCallRead
    changed: bool = Field(description="False when the number was already listed (nothing changed).")
    customers_replaced: int = Field(description="Customers with this number placed afresh in the queues.")


class InvalidLine(BaseModel):
    line: int
    reason: str


class TpsLoadRead(BaseModel):
    lines: int
    loaded: int = Field(description="Numbers newly listed.")
    already_listed: int
    invalid_count: int
    invalid: list[InvalidLine] = Field(description="The first invalid lines, by line number.")
    customers_replaced: int
