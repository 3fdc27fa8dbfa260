"""Taking the next call: compliance window, atomic lease, then the session workflow.

The API calls this; it validates and starts the workflow, and the workflow does the rest. The
customer's context is read while the agent is reserved and the workflow starts: the agent waits for the
slower of the two, not for both."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.presence import Initiator, PresenceState, get_presence, set_presence
from dialler.calls.messages import CallSessionInput, CallSessionView, call_workflow_id
from dialler.calls.view import open_view
from dialler.config import Settings
from dialler.customers.context import CustomerContext, get_context
from dialler.queues import gates
from dialler.queues.eligibility import QUEUE_PRIORITY
from dialler.queues.engine import AgentAlreadyHoldsLease, Lease, QueueEngine
from dialler.queues.rebuild import recompute
from dialler.runtime import Stores


class NextCallRefused(Exception):
    """The agent may not take a call now; the message says why."""


class AlreadyHoldingCustomer(Exception):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"You already hold customer {user_id}: finish that call first.")
        self.user_id = user_id


@dataclass(frozen=True)
class NoneEligible:
    reason: str
    until: datetime | None = None


@dataclass(frozen=True)
class CallOffered:
    session_id: str
    workflow_id: str
    lease: Lease
    context: CustomerContext | None


@dataclass(frozen=True)
class SessionOwner:
    """Who a call session belongs to, readable without a worker (the API checks it before any signal)."""

    workflow_id: str
    agent_id: int
    user_id: int


def session_key(settings: Settings, session_id: str) -> str:
    return f"{settings.redis_prefix}:session:{session_id}"


async def session_owner(*, session: AsyncSession, stores: Stores, session_id: str) -> SessionOwner | None:
    raw = await stores.redis.get(session_key(stores.settings, session_id))
    if raw is not None:
        return SessionOwner(**json.loads(raw))
    try:
        key = uuid.UUID(session_id)
    except ValueError:
        return None
    from dialler.calls.models import CallSession

    row = await session.get(CallSession, key)
    if row is None or row.agent_id is None:
        return None
    return SessionOwner(workflow_id=row.workflow_id, agent_id=row.agent_id, user_id=row.user_id)


async def take_next_call(
    *, session: AsyncSession, stores: Stores, temporal: Client, engine: QueueEngine, agent: Agent
) -> CallOffered | NoneEligible:
    redis, settings = stores.redis, stores.settings
    presence = await get_presence(session=session, redis=redis, settings=settings, agent_id=agent.id)
    if presence.state is PresenceState.RESERVED and presence.user_id is not None:
        raise AlreadyHoldingCustomer(presence.user_id)
    if presence.state is not PresenceState.AVAILABLE:
        raise NextCallRefused(f"Only an available agent can take a next call (you are {presence.state.value}).")
    now = datetime.now(UTC)
    window = gates.calling_window(clock.now(settings), gates.CallingRules.from_settings(settings))
    if not window.allowed:
        # The text names the time on the business clock; ``until`` is a real instant, as in every answer.
        until = None if window.until is None else window.until - clock.offset(settings)
        return NoneEligible(f"Outside calling hours: {window.explanation}", until)
    if not agent.queues:
        return NoneEligible("You are not assigned to any queue; ask a supervisor.")
    try:
        # Always in the queues' priority order (due callbacks first), whatever order the account lists them in.
        queues = [q for q in QUEUE_PRIORITY if q in agent.queues]
        offer = await engine.next_call_detailed(
            agent_id=agent.id, queues=queues, trained_vulnerable=agent.trained_vulnerable, now=now.timestamp()
        )
    except AgentAlreadyHoldsLease as exc:
        raise AlreadyHoldingCustomer(exc.user_id) from None
    if offer.lease is None:
        reason = "Nobody in your queues can be called right now"
        held = [
            f"{n} {what}"
            for n, what in (
                (offer.blocked_not_before, "waiting for their next allowed time"),
                (offer.blocked_vulnerable, "needing an agent trained for vulnerable customers"),
                (offer.blocked_reserved, "reserved for another agent's callback"),
            )
            if n
        ]
        return NoneEligible(reason + (f" ({'; '.join(held)})." if held else "."))

    lease = offer.lease
    session_id = str(uuid.uuid4())
    workflow_id = call_workflow_id(lease.user_id)
    owner = SessionOwner(workflow_id=workflow_id, agent_id=agent.id, user_id=lease.user_id)

    async def reserve_and_start() -> None:
        await set_presence(
            session=session,
            redis=redis,
            settings=settings,
            agent_id=agent.id,
            target=PresenceState.RESERVED,
            now=now,
            by=Initiator.SYSTEM,
            user_id=lease.user_id,
        )
        from workflows.call_session import CallSessionWorkflow

        # Started after the agent is reserved: a progressive session moves them on to on_call.
        await temporal.start_workflow(
            CallSessionWorkflow.run,
            CallSessionInput(
                session_id=session_id,
                user_id=lease.user_id,
                agent_id=agent.id,
                queue=lease.queue,
                lease_token=lease.token,
                progressive=agent.progressive_mode,  # the session dials by itself
                wrap_up_timeout_s=settings.wrap_up_timeout_s,
                lease_renew_every_s=max(5, settings.lease_ttl_s // 3),
            ),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        await redis.set(session_key(settings, session_id), json.dumps(owner.__dict__), ex=24 * 3600)
        await open_view(
            redis,
            settings,
            CallSessionView(
                session_id=session_id,
                user_id=lease.user_id,
                agent_id=agent.id,
                queue=lease.queue,
                state="reserved",
                call_sid=None,
                end_reason=None,
                disposition=None,
                answered=False,
                started_at=now,
                wrap_up_deadline=None,
                progressive=agent.progressive_mode,
            ),
        )

    try:
        load = get_context(
            redis=redis,
            prefix=settings.redis_prefix,
            replica=stores.replica,
            postgres=stores.postgres,
            user_id=lease.user_id,
        )
        _, context = await asyncio.gather(reserve_and_start(), load)
    except BaseException as exc:
        # Hand the customer back untouched (the rules re-place them when the lease is released).
        await engine.release(user_id=lease.user_id, token=lease.token, requeue=None, now=now.timestamp())
        await recompute(stores, engine, [lease.user_id])
        await set_presence(
            session=session,
            redis=redis,
            settings=settings,
            agent_id=agent.id,
            target=PresenceState.AVAILABLE,
            now=now,
            by=Initiator.SYSTEM,
        )
        if isinstance(exc, WorkflowAlreadyStartedError):
            raise NextCallRefused("That customer already has a call in progress; try next call again.") from None
        raise
    return CallOffered(session_id=session_id, workflow_id=workflow_id, lease=lease, context=context)
