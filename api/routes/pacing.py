"""Pacing: each queue's abandoned-call rate over the rolling 24 h against its ceiling (supervisors),
the ceiling itself (at most Ofcom's 3 %; a value above is a 422, never capped), the queue's pacing
mode and maximum ratio, and its pacer (``PacingWorkflow``): started and stopped here, its live
decision read from the workflow's query. Every change is audited."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep, TemporalDep, temporal_or_none
from api.errors import Conflict, Unavailable
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import OFCOM_LIMIT, WINDOW, PacingState, PacingVerdict
from dialler.pacing.messages import PacingStatus, pacing_workflow_id
from dialler.pacing.predictive import PacingMode
from dialler.queues.eligibility import QueueName
from workflows import pacing_client

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
    mode: PacingMode = Field(default=PacingMode.PREVIEW, description="The pacing mode set for the queue")
    max_ratio: float = Field(default=3.0, description="Predictive: most calls ringing per expected free agent")
    pacer: PacerRead | None = Field(default=None, description="The queue's running pacer (null: not running)")


class DecisionRead(BaseModel):
    """The pacer's last decision: the mode asked and the mode the governor allows, the numbers behind it."""

    at: datetime
    requested: str
    governed: str
    paused: bool
    reason: str = Field(description="Why the pacer dials as it does: tapered or paused with the rate and ceiling")
    ratio: float = Field(description="Calls ringing per expected free agent after the last tick")
    calls: int = Field(description="Calls placed at the last tick")
    reserved_for: list[int] = Field(description="Progressive: the agents the calls were placed for")
    pooled: int = Field(description="Predictive: calls bridged to whichever ready agent is free at the answer")
    ready: int
    in_flight: int
    expected_free: float
    expected_answers: float
    margin: float
    max_ratio: float
    rate: float | None
    ceiling: float
    answer_probability: float


class PacerRead(BaseModel):
    workflow_id: str
    running: bool
    ticks: int
    decision: DecisionRead | None


QueuePacingRead.model_rebuild()


class PacingRead(BaseModel):
    generated_at: datetime
    window_hours: float
    queues: list[QueuePacingRead]


class CeilingUpdate(BaseModel):
    ceiling: float = Field(description="A fraction: 0.01 is 1 %. At most 0.03 (Ofcom); 0 pauses on any drop")


class PacingUpdate(BaseModel):
    """A queue's pacing, as a supervisor sets it on the board (fields left out are unchanged)."""

    mode: PacingMode | None = Field(default=None, description="preview (agents dial), progressive or predictive")
    max_ratio: float | None = Field(default=None, description="Predictive: 1 to 5 calls ringing per free agent")
    ceiling: float | None = Field(default=None, description="A fraction, at most 0.03 (Ofcom); 0.01 is 1 %")


class PacerStarted(BaseModel):
    workflow_id: str
    queue: str
    started: bool = Field(description="False: the queue's pacer was already running")


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


STATUS_TIMEOUT = timedelta(seconds=3)


def _pacer(queue: str, found: PacingStatus | None) -> PacerRead | None:
    if found is None:
        return None
    decision = None
    if found.decision is not None:
        fields = asdict(found.decision)
        fields.pop("queue")
        decision = DecisionRead(**fields)
    return PacerRead(workflow_id=pacing_workflow_id(queue), running=found.running, ticks=found.ticks, decision=decision)


async def _pacers(temporal: Client | None) -> dict[str, PacerRead | None]:
    """Each queue's running pacer, read from its workflow; none while Temporal cannot be reached (the
    rates still show: they come from PostgreSQL)."""
    if temporal is None:
        return {q.value: None for q in QueueName}

    async def read(queue: str) -> PacerRead | None:
        try:
            return _pacer(queue, await pacing_client.pacing_status(temporal, queue, rpc_timeout=STATUS_TIMEOUT))
        except RPCError:
            return None

    # The queues side by side: a board's poll waits for the slowest pacer, not for their sum.
    read_all = await asyncio.gather(*(read(q.value) for q in QueueName))
    return {q.value: pacer for q, pacer in zip(QueueName, read_all, strict=True)}


async def _read(stores: StoresDep, temporal: Client | None = None) -> PacingRead:
    now = clock.instant()
    found = await pacing.verdicts(stores.postgres, now=now, amd_on=stores.settings.answering_machine_detection)
    modes = await pacing.queue_pacing(stores.postgres)
    pacers = await _pacers(temporal)
    return PacingRead(
        generated_at=now,
        window_hours=WINDOW.total_seconds() / 3600,
        queues=[
            pacing_read(found[q.value]).model_copy(
                update={
                    "mode": modes[q.value].mode,
                    "max_ratio": float(modes[q.value].max_ratio),
                    "pacer": pacers[q.value],
                }
            )
            for q in QueueName
        ],
    )


@router.get("/queues", response_model=PacingRead)
async def queue_pacing(
    request: Request, stores: StoresDep, _: Annotated[Agent, Depends(require(Permission.DASHBOARD_READ))]
) -> PacingRead:
    """Every queue's abandoned-call rate over the last 24 h, its ceiling, whether progressive
    dialling is paused (with the reason), its pacing mode and maximum ratio, and its running pacer's
    last decision (requested and governed mode, ratio, inputs, rate and why)."""
    return await _read(stores, await temporal_or_none(request))


async def _one(stores: StoresDep, temporal: Client | None, queue: QueueName) -> QueuePacingRead:
    found = await _read(stores, temporal)
    return next(q for q in found.queues if q.queue == queue.value)


@router.put("/queues/{queue}/settings", response_model=QueuePacingRead)
async def set_queue_pacing(
    queue: QueueName,
    body: PacingUpdate,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.PACING_MANAGE))],
) -> QueuePacingRead:
    """Set a queue's pacing mode, maximum ratio and/or ceiling (audited); a running pacer applies them
    at once. A ceiling above 3 % is refused with a 422 (`ceiling_above_ofcom_limit`), a ratio outside
    1–5 with a 422."""
    now = clock.instant()
    details: dict[str, str] = {}
    if body.mode is not None or body.max_ratio is not None:
        await pacing.set_pacing(
            session, queue=queue.value, mode=body.mode, max_ratio=body.max_ratio, agent_id=agent.id, now=now
        )
        if body.mode is not None:
            details["mode"] = body.mode.value
        if body.max_ratio is not None:
            details["max_ratio"] = str(body.max_ratio)
    if body.ceiling is not None:
        stored = await pacing.set_ceiling(session, queue=queue.value, ceiling=body.ceiling, agent_id=agent.id, now=now)
        details["ceiling"] = str(stored)
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="pacing.settings_set",
        subject_type="queue",
        subject_id=queue.value,
        details=details,
    )
    await session.commit()
    temporal = await temporal_or_none(request)
    if temporal is not None:
        with contextlib.suppress(RPCError):  # the pacer reads the settings at its next tick anyway
            await pacing_client.settings_changed(temporal, queue.value)
    return await _one(stores, temporal, queue)


@router.post("/queues/{queue}/start", response_model=PacerStarted, status_code=status.HTTP_202_ACCEPTED)
async def start_pacer(
    queue: QueueName,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.PACING_MANAGE))],
) -> PacerStarted:
    """Start the queue's pacer (`PacingWorkflow`, id `pacing-<queue>`): from its next tick it dials
    for the queue's ready agents in the queue's mode, under the governor. Audited. 409 when the
    queue's mode is preview (agents dial themselves): set progressive or predictive first."""
    modes = await pacing.queue_pacing(stores.postgres)
    if modes[queue.value].mode == PacingMode.PREVIEW:
        raise Conflict("The queue is in preview mode (agents dial): set it to progressive or predictive first.")
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="pacing.started",
        subject_type="queue",
        subject_id=queue.value,
        details={"mode": modes[queue.value].mode.value},
    )
    await session.commit()
    started = await pacing_client.start_pacing(
        temporal,
        task_queue=stores.settings.temporal_task_queue,
        input=pacing_client.pacing_input(stores.settings, queue.value, agent.id),
    )
    return PacerStarted(workflow_id=pacing_workflow_id(queue.value), queue=queue.value, started=started)


@router.post("/queues/{queue}/stop", response_model=PacerStarted, status_code=status.HTTP_202_ACCEPTED)
async def stop_pacer(
    queue: QueueName,
    request: Request,
    session: SessionDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.PACING_MANAGE))],
) -> PacerStarted:
    """Stop the queue's pacer: it places no more calls; calls already placed go on. Audited. 409 when
    no pacer is running on the queue."""
    # Asked of Temporal's server, not the pacer: a stop (a durable signal) must not wait for a worker.
    try:
        running = await pacing_client.pacer_running(temporal, queue.value, rpc_timeout=STATUS_TIMEOUT)
    except RPCError:
        raise Unavailable("The pacer's state cannot be read right now; try again.", dependency="temporal") from None
    if not running:
        raise Conflict("No pacer is running on this queue.")
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="pacing.stopped",
        subject_type="queue",
        subject_id=queue.value,
    )
    await session.commit()
    await pacing_client.stop_pacing(temporal, queue.value)
    return PacerStarted(workflow_id=pacing_workflow_id(queue.value), queue=queue.value, started=False)


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
    return await _one(stores, await temporal_or_none(request), queue)
