"""Pacing: each queue's abandoned-call rate over the rolling 24 h against its ceiling (supervisors),
and the ceiling itself (at most Ofcom's 3 %; a value above is a 422, never capped)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import OFCOM_LIMIT, WINDOW, PacingState, PacingVerdict
from dialler.queues.eligibility import QueueName

router = APIRouter(prefix="/pacing", tags=["pacing"], responses=PROTECTED_RESPONSES)


class QueuePacingRead(BaseModel):
    """One queue's abandoned-call rate (Ofcom's measure) and whether its progressive dialling runs."""

    queue: str
    abandoned: int = Field(description="Answered calls with no agent on within 2 s (sessions started in the window)")
    live_answered: int = Field(description="Answered by a person and put through to an agent")
    machine: int = Field(description="Answered by a machine (AMD's verdict or the agent's voicemail outcome)")
    amd_on: bool = Field(description="Answering-machine detection is on: the drops are adjusted for machines")
    machine_adjustment: float = Field(description="Drops estimated to have been machines (Ofcom's AMD adjustment)")
    adjusted_abandoned: float
    rate: float | None = Field(description="Adjusted drops ÷ (live answered + adjusted drops); null: no live call")
    ceiling: float = Field(description="Progressive dialling pauses when the rate reaches this (default 0.01)")
    ofcom_limit: float
    state: PacingState
    reason: str | None = Field(description="Why progressive dialling is paused (null when open)")


class PacingRead(BaseModel):
    generated_at: datetime
    window_hours: float
    queues: list[QueuePacingRead]


class CeilingUpdate(BaseModel):
    ceiling: float = Field(description="A fraction: 0.01 is 1 %. At most 0.03 (Ofcom); 0 pauses on any drop")


def pacing_read(v: PacingVerdict) -> QueuePacingRead:
    return QueuePacingRead(
        queue=v.queue,
        abandoned=v.rate.inputs.abandoned,
        live_answered=v.rate.inputs.live_answered,
        machine=v.rate.inputs.machine,
        amd_on=v.rate.inputs.amd_on,
        machine_adjustment=v.rate.machine_adjustment,
        adjusted_abandoned=v.rate.adjusted_abandoned,
        rate=v.rate.rate,
        ceiling=float(v.ceiling),
        ofcom_limit=float(OFCOM_LIMIT),
        state=v.state,
        reason=v.reason,
    )


async def _read(stores: StoresDep) -> PacingRead:
    now = clock.instant()
    found = await pacing.verdicts(stores.postgres, now=now, amd_on=stores.settings.answering_machine_detection)
    return PacingRead(
        generated_at=now,
        window_hours=WINDOW.total_seconds() / 3600,
        queues=[pacing_read(found[q.value]) for q in QueueName],
    )


@router.get("/queues", response_model=PacingRead)
async def queue_pacing(
    stores: StoresDep, _: Annotated[Agent, Depends(require(Permission.DASHBOARD_READ))]
) -> PacingRead:
    """Every queue's abandoned-call rate over the last 24 h, its ceiling, and whether progressive
    dialling is paused (with the reason)."""
    return await _read(stores)


@router.put("/queues/{queue}/ceiling", response_model=QueuePacingRead)
async def set_queue_ceiling(
    queue: QueueName,
    body: CeilingUpdate,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.PACING_MANAGE))],
) -> QueuePacingRead:
    """Set a queue's abandoned-call ceiling (audited). Above 3 % is refused with a 422
    (`ceiling_above_ofcom_limit`): a setting may make Ofcom's rule stricter, never looser."""
    stored = await pacing.set_ceiling(
        session, queue=queue.value, ceiling=body.ceiling, agent_id=agent.id, now=clock.instant()
    )
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="pacing.ceiling_set",
        subject_type="queue",
        subject_id=queue.value,
        details={"ceiling": str(stored)},
    )
    await session.commit()
    found = await _read(stores)
    return next(q for q in found.queues if q.queue == queue.value)
