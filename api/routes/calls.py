"""Calls: take the next customer, dial, hang up, record the outcome, read the live state.

The API validates and talks to the session's workflow (start, signal, update, query); the workflow
does the work. An agent acts only on their own session (object-level checks, audited refusals)."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep, TemporalDep
from api.errors import Conflict, Forbidden, NotFound, Unavailable, Unprocessable
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.audit.service import record_ctx
from dialler.calls import received
from dialler.calls.dispositions import AGENT_DISPOSITIONS
from dialler.calls.messages import CallSessionView, CallState, DialRequest, OutcomeInput, call_workflow_id
from dialler.calls.outcomes import OutcomeRefused, SessionFacts, check_submission
from dialler.calls.service import (
    NoneEligible,
    SessionOwner,
    session_owner,
    take_next_call,
)
from dialler.calls.view import read_agent_view, read_view
from dialler.compliance.records import dial_refusal
from dialler.customers.context import CustomerContext
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from workflows import call_session_client
from workflows.call_session_client import CallSessionStarter

router = APIRouter(tags=["calls"], responses=PROTECTED_RESPONSES)
QUERY_TIMEOUT = timedelta(seconds=5)
STATE_UNAVAILABLE = "The call's state is not available right now; try again in a moment."
UPDATE_TIMEOUT = timedelta(seconds=20)
# An outcome kept in PostgreSQL need not hold the agent long: past this, it is answered 202 and the
# session takes it when it resumes.
KEPT_UPDATE_TIMEOUT = timedelta(seconds=10)


class LeaseRead(BaseModel):
    queue: str
    expires_at: float


class NextCallRead(BaseModel):
    """The customer to call, or why there is none (``customer`` null and ``reason`` set)."""

    session_id: str | None = None
    workflow_id: str | None = None
    lease: LeaseRead | None = None
    customer: CustomerContext | None = None
    reason: str | None = None
    until: datetime | None = None


class RefusalRead(BaseModel):
    reasons: list[str]
    next_allowed_at: datetime | None


class CallRead(BaseModel):
    session_id: str
    workflow_id: str
    user_id: int
    agent_id: int
    queue: str
    state: str = Field(description=f"One of: {', '.join(CallState)}")
    end_reason: str | None
    disposition: str | None
    answered: bool
    started_at: datetime
    wrap_up_deadline: datetime | None
    dispositions: list[str]
    refusal: RefusalRead | None = None
    """Set when the compliance gate refused the dial at the last moment: why not now, and from when."""
    answered_by: str | None = Field(
        default=None,
        description="The carrier's answering-machine verdict (human, machine_start, ...) when detection is on",
    )


class OutcomeCreate(BaseModel):
    disposition: str = Field(description=f"One of: {', '.join(AGENT_DISPOSITIONS)}")
    notes: str | None = Field(default=None, max_length=2000)
    callback_at: datetime | None = Field(default=None, description="Required with callback_requested (UTC or offset)")


class Accepted(BaseModel):
    """A call request the session took. ``state`` is the call state it moves the call to (the same name
    and values as ``CallRead.state``; one name per thing, so a client written from the docs reads the
    right field); GET /calls/{id} tells when it gets there."""

    session_id: str
    state: str = Field(description=f"One of: {', '.join(CallState)}")
    disposition: str | None = Field(default=None, description="The outcome recorded (outcome only)")
    kept: bool = Field(
        default=False,
        description="Outcome only (202): the session was unreachable; the outcome is kept and applied when it resumes",
    )


@router.post(
    "/agents/me/next-call", response_model=NextCallRead, responses={409: {"description": "Already holding a customer"}}
)
async def next_call(
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_NEXT))],
) -> NextCallRead:
    """Reserve the best customer this agent may call now and return their context; the agent becomes
    `reserved` and a call session starts. When nobody is eligible, `customer` is null with the reason.
    An agent who holds a customer whose session never started (the API stopped in between) gets that
    customer again, now with their session; one whose session runs gets a 409."""
    # A refusal (NextCallRefused, AlreadyHoldingCustomer) is a Conflict: 409 by the one error table.
    offered = await take_next_call(
        session=session,
        stores=stores,
        start_session=CallSessionStarter(temporal, stores.settings.temporal_task_queue),
        engine=queue_engine(stores),
        agent=agent,
    )
    if isinstance(offered, NoneEligible):
        return NextCallRead(reason=offered.reason, until=offered.until)
    request.app.state.read_ahead.after_take(offered.lease.queue)  # the next agent's customer, in the background
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="customer.context_read",
        subject_type="customer",
        subject_id=offered.lease.user_id,
        details={"session_id": offered.session_id},
    )
    await session.commit()
    return NextCallRead(
        session_id=offered.session_id,
        workflow_id=offered.workflow_id,
        lease=LeaseRead(queue=offered.lease.queue, expires_at=offered.lease.expires_at),
        customer=offered.context,
    )


async def _own_session(
    request: Request,
    session_id: str,
    stores: Stores,
    temporal: Client,
    agent: Agent,
    session: AsyncSession,
    *,
    act: bool,
) -> SessionOwner:
    """The session's owner, if this agent may use it: to act, their own; to read, supervisors any.
    Ownership is read from our stores, not the workflow, so that clicks still land while a worker
    restarts (signals are durable; the workflow takes them in when it resumes)."""
    owner = await session_owner(session=session, stores=stores, session_id=session_id)
    if owner is None:
        raise NotFound("No such call session.")
    may_read_all = Permission.CALLS_READ_ALL in permissions_of(agent.role)
    if owner.agent_id != agent.id and (act or not may_read_all):
        await record_ctx(
            audit_context(request, agent),
            session=session,
            action="call.access_denied",
            subject_type="call_session",
            subject_id=session_id,
        )
        await session.commit()
        raise Forbidden("This call session belongs to another agent.")
    return owner


async def _view(temporal: Client, workflow_id: str, session_id: str) -> CallSessionView:
    try:
        view = await call_session_client.session_view(temporal, workflow_id, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("No such call session.") from None
        raise Unavailable(STATE_UNAVAILABLE, dependency="temporal") from None
    if view.session_id != session_id:
        raise NotFound("That call session has finished.")
    return view


def _read(view: CallSessionView, workflow_id: str) -> CallRead:
    return CallRead(**view.__dict__, workflow_id=workflow_id, dispositions=list(AGENT_DISPOSITIONS))


async def open_call_of(stores: Stores, temporal: Client | None, agent_id: int) -> CallRead | None:
    """The agent's open call session, or None when they hold no customer. Read from the session's
    view in Redis (the workspace polls this every second); the workflow is queried only for a session
    with no view. Raises Unavailable when neither can say."""
    lease = await queue_engine(stores).lease_of_agent(agent_id)
    if lease is None:
        return None
    workflow_id = call_workflow_id(lease.user_id)
    view = await read_agent_view(stores.redis, stores.settings, lease)
    if view is None:
        if temporal is None:
            raise Unavailable(STATE_UNAVAILABLE, dependency="temporal")
        try:
            view = await call_session_client.session_view(temporal, workflow_id, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:
            raise Unavailable(STATE_UNAVAILABLE, dependency="temporal") from None
        if view.agent_id != agent_id:
            return None
    return await _with_refusal(stores, _read(view, workflow_id))


async def _with_refusal(stores: Stores, call: CallRead) -> CallRead:
    """Add the gate's refusal to a call that could not be placed (read only then: the panel polls)."""
    if call.end_reason != "failed":
        return call
    async with stores.postgres.connect() as conn:
        refused = await dial_refusal(conn, call_session_id=call.session_id)
    if refused is None:
        return call
    return call.model_copy(
        update={"refusal": RefusalRead(reasons=refused.reasons, next_allowed_at=refused.next_allowed_at)}
    )


@router.get("/calls/current", response_model=CallRead, responses={204: {"description": "No session"}})
async def current_call(
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
) -> CallRead | Response:
    """The agent's open session (after a page reload), or 204."""
    try:
        call = await open_call_of(stores, temporal, agent.id)
    except Unavailable:
        call = None
    return call if call is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/calls/{session_id}", response_model=CallRead)
async def get_call(
    session_id: str,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
) -> CallRead:
    """Live state of a call session (the agent's own; supervisors any)."""
    owner = await _own_session(request, session_id, stores, temporal, agent, session, act=False)
    view = await read_view(stores.redis, stores.settings, session_id) or await _view(
        temporal, owner.workflow_id, session_id
    )
    return await _with_refusal(stores, _read(view, owner.workflow_id))


@router.post("/calls/{session_id}/dial", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def dial(
    session_id: str,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
) -> Accepted:
    """Place the call to the reserved customer (the number never leaves the server). The session
    ignores a dial once the call has started."""
    owner = await _own_session(request, session_id, stores, temporal, agent, session, act=True)
    await call_session_client.dial(temporal, owner.workflow_id, DialRequest(agent_id=agent.id))
    return Accepted(session_id=session_id, state=CallState.DIALING)


@router.post("/calls/{session_id}/hangup", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def hangup(
    session_id: str,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
) -> Accepted:
    """End the live call."""
    owner = await _own_session(request, session_id, stores, temporal, agent, session, act=True)
    await call_session_client.hang_up(temporal, owner.workflow_id)
    return Accepted(session_id=session_id, state=CallState.ENDED)


@router.post("/calls/{session_id}/end", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def end_call(
    session_id: str,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_END_ANY))],
) -> Accepted:
    """A supervisor ends anyone's live call: the carrier is told to hang up, and when it never reports
    the end (its leg is gone) the session ends the call itself shortly after, freeing the agent for
    the outcome. Audited."""
    owner = await session_owner(session=session, stores=stores, session_id=session_id)
    if owner is None:
        raise NotFound("No such call session.")
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="call.ended_by_supervisor",
        subject_type="call_session",
        subject_id=session_id,
    )
    await session.commit()
    await call_session_client.hang_up(temporal, owner.workflow_id)
    return Accepted(session_id=session_id, state=CallState.ENDED)


@router.post(
    "/calls/{session_id}/outcome",
    response_model=Accepted,
    responses={
        202: {
            "model": Accepted,
            "description": "Kept: the session was unreachable and applies it, once, when it resumes",
        }
    },
)
async def submit_outcome(
    session_id: str,
    body: OutcomeCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
) -> Accepted:
    """Record the call's outcome (validated by the session: disposition list, required fields).

    200: the session recorded it. 202: the session could not be reached (its worker is restarting):
    the outcome is kept in our database, committed, and the session applies it exactly once when it
    resumes (even after the wrap-up limit). The same outcome posted again is the same request."""
    owner = await _own_session(request, session_id, stores, temporal, agent, session, act=True)
    outcome = OutcomeInput(
        agent_id=agent.id, disposition=body.disposition, notes=body.notes, callback_at=body.callback_at
    )
    kept = await _keep(session, stores, session_id, outcome)
    try:
        accepted = await call_session_client.submit_outcome(
            temporal,
            owner.workflow_id,
            outcome,
            rpc_timeout=KEPT_UPDATE_TIMEOUT if kept is not None else UPDATE_TIMEOUT,
        )
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        finished = isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND
        if finished and not await _taken_by_session(session, session_id, kept):
            raise NotFound("That call session has finished.") from None
        if kept is None:  # no view to judge it by: nothing was kept, so the agent must try again
            raise Unavailable(
                "The outcome could not be recorded right now; it was not kept: try again.", dependency="temporal"
            ) from None
        if not finished:
            if not isinstance(exc, RPCError):  # Temporal answers but no worker does: a signal waits for one
                with suppress(RPCError):  # failing, the session still looks for it before closing
                    await call_session_client.outcome_received(temporal, owner.workflow_id, rpc_timeout=QUERY_TIMEOUT)
            response.status_code = status.HTTP_202_ACCEPTED
        return Accepted(
            session_id=session_id, state=CallState.CLOSED, disposition=outcome.disposition, kept=not finished
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if not isinstance(cause, ApplicationError):
            raise
        refusal = OutcomeRefused(cause.type or "", cause.message)
        if await _taken_by_session(session, session_id, kept):
            return Accepted(session_id=session_id, state=CallState.CLOSED, disposition=outcome.disposition)
        raise _refused(refusal) from None
    return Accepted(session_id=accepted.session_id, state=CallState.CLOSED, disposition=accepted.disposition)


async def _keep(session: AsyncSession, stores: Stores, session_id: str, outcome: OutcomeInput) -> bool | None:
    """Keep the outcome before delivering it, when the session's view says the session will take it
    (the same rule as its Update): True if kept now, False if the same one was kept before (a repeat),
    None if not kept (no view, or the view refuses it: then the session's own answer decides)."""
    view = await read_view(stores.redis, stores.settings, session_id)
    if view is None:
        return None
    try:
        check_submission(outcome, SessionFacts.from_view(view), now=datetime.now(UTC))
    except OutcomeRefused:
        return False if await received.is_kept(session=session, session_id=session_id, outcome=outcome) else None
    try:
        stored = await received.keep(session=session, session_id=session_id, outcome=outcome, at=datetime.now(UTC))
    except OutcomeRefused as exc:  # a different outcome is kept for this call
        raise _refused(exc) from None
    await session.commit()
    return stored


async def _taken_by_session(session: AsyncSession, session_id: str, kept: bool | None) -> bool:
    """After the session refused or could not be asked: whether it has already taken the kept outcome
    (then it is applied, and the agent is answered so). An outcome this request kept and the session
    has not taken is withdrawn, so that it is never applied after a refusal."""
    if kept is None:
        return False
    if kept:
        withdrawn = await received.withdraw(session=session, session_id=session_id)
        await session.commit()
        return not withdrawn
    return await received.is_claimed(session=session, session_id=session_id)


def _refused(refusal: OutcomeRefused) -> Exception:
    return Unprocessable(refusal.message) if refusal.invalid else Conflict(refusal.message)
