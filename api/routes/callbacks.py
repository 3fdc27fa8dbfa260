"""Callbacks: an agent's own (upcoming, due, missed), all with filters for supervisors, and booking,
rescheduling and cancelling with the same validation as the workflow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, SessionDep, StoresDep, TemporalDep, UserIdPath
from api.errors import Forbidden, NotFound, Unavailable, Unprocessable
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.audit.service import record_ctx
from dialler.callbacks.messages import LIVE, BookCallbackInput, CancelInput, RescheduleInput
from dialler.callbacks.models import Callback
from dialler.callbacks.rules import bookable_problem, calling_hours
from dialler.customers.access import may_work_with
from dialler.queues.runtime import queue_engine
from workflows.callback_client import book_callback, callback_handle, cancel_callback, reschedule_callback

router = APIRouter(prefix="/callbacks", tags=["callbacks"], responses=PROTECTED_RESPONSES)
UPDATE_TIMEOUT = timedelta(seconds=20)


class CallbackRead(BaseModel):
    id: int
    user_id: int
    workflow_id: str
    status: str
    due_at: datetime
    owner_agent_id: int | None
    booked_by_agent_id: int | None
    source: str
    reason: str | None
    outcome: str | None
    updated_at: datetime


class MyCallbacks(BaseModel):
    due: list[CallbackRead]
    upcoming: list[CallbackRead]
    missed: list[CallbackRead]


class CallbackPage(BaseModel):
    items: list[CallbackRead]
    next_before_id: int | None


class CallbackCreate(BaseModel):
    user_id: int = Field(ge=1, le=MAX_ID)
    due_at: datetime = Field(description="When to call (with a UTC offset); inside calling hours, UK time")


class CallbackReschedule(BaseModel):
    due_at: datetime


class CallbackCancel(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class CallbackAccepted(BaseModel):
    workflow_id: str
    user_id: int
    due_at: datetime


def _read(row: Callback) -> CallbackRead:
    return CallbackRead.model_validate(row, from_attributes=True)


@router.get("/mine", response_model=MyCallbacks)
async def my_callbacks(
    session: SessionDep, agent: Annotated[Agent, Depends(require(Permission.CALLBACKS_READ_OWN))]
) -> MyCallbacks:
    """The agent's callbacks: due now (theirs first), upcoming, and missed in the last 7 days."""
    since = clock.instant() - timedelta(days=7)
    rows = (
        await session.scalars(
            select(Callback)
            .where(Callback.owner_agent_id == agent.id)
            .where(Callback.status.in_([*LIVE, "missed"]))
            .where((Callback.status != "missed") | (Callback.updated_at >= since))
            .order_by(Callback.due_at)
            .limit(500)
        )
    ).all()
    now = clock.instant()

    # A prepared callback is callable from its due second, whether or not the workflow has recorded
    # 'due' yet (that bookkeeping can lag when many fall due together): the list follows the clock.
    def due_now(r: Callback) -> bool:
        return r.status in ("due", "open") or (r.status == "scheduled" and r.due_at <= now)

    return MyCallbacks(
        due=[_read(r) for r in rows if due_now(r)],
        upcoming=[_read(r) for r in rows if r.status == "scheduled" and not due_now(r)],
        missed=[_read(r) for r in rows if r.status == "missed"],
    )


@router.get("", response_model=CallbackPage)
async def all_callbacks(
    session: SessionDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLBACKS_READ_ALL))],
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(scheduled|due|open|completed|missed|cancelled)$")
    ] = None,
    agent_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    due_from: datetime | None = None,
    due_to: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CallbackPage:
    """Every callback, newest first, filtered by status, owner and due window."""
    query = select(Callback).order_by(Callback.id.desc()).limit(limit)
    if status_:
        query = query.where(Callback.status == status_)
    if agent_id is not None:
        query = query.where(Callback.owner_agent_id == agent_id)
    if due_from is not None:
        query = query.where(Callback.due_at >= due_from)
    if due_to is not None:
        query = query.where(Callback.due_at < due_to)
    if before_id is not None:
        query = query.where(Callback.id < before_id)
    rows = (await session.scalars(query)).all()
    return CallbackPage(items=[_read(r) for r in rows], next_before_id=rows[-1].id if len(rows) == limit else None)


async def _may_act(request: Request, session, stores, agent: Agent, user_id: int) -> None:  # type: ignore[no-untyped-def]
    if await may_work_with(session=session, engine=queue_engine(stores), agent=agent, user_id=user_id):
        return
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="callback.access_denied",
        subject_type="customer",
        subject_id=user_id,
    )
    await session.commit()
    raise Forbidden("You can only manage callbacks of customers you hold or have called.")


@router.post("", response_model=CallbackAccepted, status_code=status.HTTP_202_ACCEPTED)
async def book(
    body: CallbackCreate,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLBACKS_WRITE))],
) -> CallbackAccepted:
    """Book a callback (or move the customer's live one). Refused with the next allowed slot when the
    time is in the past or outside calling hours."""
    await _may_act(request, session, stores, agent, body.user_id)
    problem = bookable_problem(body.due_at, clock.instant(), calling_hours(stores.settings))
    if problem:
        raise Unprocessable(problem)
    source = "supervisor" if Permission.CALLBACKS_MANAGE in permissions_of(agent.role) else "agent"
    handle = await book_callback(
        temporal,
        stores.settings,
        BookCallbackInput(user_id=body.user_id, due_at=body.due_at, booked_by_agent_id=agent.id, source=source),
    )
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="callback.book",
        subject_type="customer",
        subject_id=body.user_id,
        details={"due_at": body.due_at.isoformat()},
    )
    await session.commit()
    return CallbackAccepted(workflow_id=handle.id, user_id=body.user_id, due_at=body.due_at)


async def _live_callback(session: AsyncSession, user_id: int) -> Callback:
    """The customer's live callback (the mirror), or 404: checked before asking its workflow anything."""
    live = await session.scalar(select(Callback).where(Callback.user_id == user_id, Callback.status.in_(LIVE)))
    if live is None:
        raise NotFound("This customer has no live callback.")
    return live


def _cause(exc: WorkflowUpdateFailedError) -> str:
    return exc.cause.message if isinstance(exc.cause, ApplicationError) else "the callback could not be changed"


@router.post("/{user_id}/reschedule", response_model=CallbackAccepted)
async def reschedule(
    user_id: UserIdPath,
    body: CallbackReschedule,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLBACKS_WRITE))],
) -> CallbackAccepted:
    """Move the customer's live callback (validated by the workflow: future, inside calling hours)."""
    await _may_act(request, session, stores, agent, user_id)
    await _live_callback(session, user_id)
    handle = callback_handle(temporal, user_id)
    try:
        await reschedule_callback(
            temporal, user_id, RescheduleInput(body.due_at, by_agent_id=agent.id), rpc_timeout=UPDATE_TIMEOUT
        )
    except WorkflowUpdateFailedError as exc:
        raise Unprocessable(_cause(exc)) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("This customer has no live callback.") from None
        raise Unavailable("The callback could not be moved right now; try again.", dependency="temporal") from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:  # no worker took it in time (e.g. one is restarting)
        raise Unavailable("The callback did not answer in time; try again.", dependency="temporal") from None
    return CallbackAccepted(workflow_id=handle.id, user_id=user_id, due_at=body.due_at)


@router.post("/{user_id}/cancel", response_model=CallbackAccepted, status_code=status.HTTP_202_ACCEPTED)
async def cancel(
    user_id: UserIdPath,
    body: CallbackCancel,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLBACKS_WRITE))],
) -> CallbackAccepted:
    """Cancel the customer's live callback, with the reason."""
    await _may_act(request, session, stores, agent, user_id)
    live = await _live_callback(session, user_id)
    handle = callback_handle(temporal, user_id)
    await cancel_callback(temporal, user_id, CancelInput(body.reason, by_agent_id=agent.id))
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="callback.cancel",
        subject_type="customer",
        subject_id=user_id,
        details={"reason": body.reason},
    )
    await session.commit()
    return CallbackAccepted(workflow_id=handle.id, user_id=user_id, due_at=live.due_at)
