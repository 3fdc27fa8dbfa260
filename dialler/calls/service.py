"""Taking the next call: compliance window, atomic lease, then the session workflow.

The API calls this; it validates and starts the workflow (through the starter it is given), and the
workflow does the rest. Who holds whom is the lease alone: next-call takes it in one atomic step,
only for an available agent, and names the session in it; the agent is ``reserved`` because of it
(``dialler.agents.presence.effective``) and nothing else is written to say so. So no crash leaves
anything half-done:

* before the lease: nothing happened;
* between the lease and the workflow's start: the lease names a session nobody started. The agent's
  next click starts it (``take_next_call`` finds the lease and resumes), and if they never click, the
  lease expires and puts the customer back: the agent is available again by that alone;
* the start refused (Temporal down): the lease is given back in one atomic step
  (``QueueEngine.give_back``), restoring the customer's placement;
* the customer's last session still open (its lease lapsed while its worker was away, so the queue
  offered them again): the customer is not put back at the head (every next call would meet them
  again, a 409 loop); the lease goes back to that session (``reclaim_for``, fenced by its own token)
  or, with none to give it to, the customer waits out of the queues until that session closes and
  places them. The agent is offered the next customer;
* after the start: the session owns the lease and the agent, and Temporal keeps it going.

The customer's context is read while the workflow starts: the agent waits for the slower of the
two, not for both."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.presence import Initiator, PresenceState, get_presence, presence_key, set_presence
from dialler.calls import inbound
from dialler.calls.leases import open_session_of_user, reclaim_for
from dialler.calls.messages import CallSessionInput, CallSessionView, call_workflow_id
from dialler.calls.view import open_view, read_view
from dialler.compliance import gate, gates
from dialler.customers.context import CustomerContext, get_context
from dialler.errors import Conflict
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import progressive_paused
from dialler.queues.eligibility import QUEUE_PRIORITY
from dialler.queues.engine import AgentAlreadyHoldsLease, AgentNotAvailable, Lease, QueueEngine, StaleLease
from dialler.runtime import Stores

log = logging.getLogger("dialler.calls")
# Customers skipped in one next-call because their last session is still open: each is taken out of
# the queues as it is met, so a few tries reach a free one unless many sessions are stranded at once.
BUSY_CUSTOMERS_SKIPPED = 5


class StartSession(Protocol):
    async def __call__(self, input: CallSessionInput) -> bool:
        """Start the call session's workflow; False if a session of this customer's still runs."""
        ...


class NextCallRefused(Conflict):
    """The agent may not take a call now; the message says why."""


class PhoneNotReady(NextCallRefused):
    """A progressive call dials the customer at once: the agent's phone must be ready first."""

    code = "phone_not_ready"

    def __init__(self) -> None:
        super().__init__(
            "Your phone is not connected: progressive mode rings the customer at once, so keep this page "
            "open until its phone is ready, or switch to preview."
        )


class AlreadyHoldingCustomer(Conflict):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"You already hold customer {user_id}: finish that call first.", {"user_id": user_id})
        self.user_id = user_id


@dataclass(frozen=True)
class NoneEligible:
    reason: str
    until: datetime | None = None
    searched: bool = False  # the agent's queues were searched and held nobody callable


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


async def session_owner(*, session: AsyncSession, stores: Stores, session_id: str) -> SessionOwner | None:
    """From the session's view (its identity, fixed when it opened), else its row in PostgreSQL."""
    view = await read_view(stores.redis, stores.settings, session_id)
    if view is not None:
        return SessionOwner(workflow_id=call_workflow_id(view.user_id), agent_id=view.agent_id, user_id=view.user_id)
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
    *,
    session: AsyncSession,
    stores: Stores,
    start_session: StartSession,
    engine: QueueEngine,
    agent: Agent,
    queue: str | None = None,
    progressive: bool | None = None,
) -> CallOffered | NoneEligible:
    """The agent's next customer, skipping any whose last session is still open (``_open``). The
    agent's click, or the queue's pacer (``queue``: only from that queue; ``progressive``: the session
    dials at once, whatever the agent's own mode)."""
    for _ in range(BUSY_CUSTOMERS_SKIPPED):
        offered = await _offer_next_call(
            session=session,
            stores=stores,
            start_session=start_session,
            engine=engine,
            agent=agent,
            queue=queue,
            progressive=agent.progressive_mode if progressive is None else progressive,
        )
        if offered is not None:
            return offered
    raise NextCallRefused("The customers at the head of your queues all have a call in progress; try again.")


def pool_id_key(stores: Stores) -> str:
    return f"{stores.settings.redis_prefix}:pacing:pool-seq"


async def take_pooled_call(
    *, stores: Stores, start_session: StartSession, engine: QueueEngine, queue: str
) -> CallOffered | NoneEligible:
    """A predictive call with no agent yet: the next customer of ``queue`` leased to a *pool id* (a
    negative number no agent has, unique to this call), and its session started dialling at once. The
    customer who answers is bridged to a ready agent claimed at the answer (``QueueEngine.claim``),
    or hears the information message (abandoned). Customers needing an agent trained for vulnerable
    customers, or a callback reserved for an agent, are never pooled: who takes the call is not known."""
    for _ in range(BUSY_CUSTOMERS_SKIPPED):
        window = gate.shared_hours(clock.now(stores.settings), gates.CallingRules.from_settings(stores.settings))
        if not window.allowed:
            return NoneEligible(f"Outside calling hours: {window.explanation}")
        await progressive_queues(stores, [queue])
        pool_id = -int(await stores.redis.incr(pool_id_key(stores)))
        offer = await engine.next_call_detailed(
            agent_id=pool_id,
            queues=[queue],
            trained_vulnerable=False,
            now=datetime.now(UTC).timestamp(),
            session_id=str(uuid.uuid4()),
        )
        if offer.lease is None:
            return NoneEligible(f"Nobody in {queue} can be called right now.")
        offered = await _open(
            stores=stores,
            engine=engine,
            start_session=start_session,
            agent_id=pool_id,
            progressive=True,
            pooled=True,
            lease=offer.lease,
            resumed=False,
        )
        if offered is not None:
            return offered
    raise NextCallRefused(f"The customers at the head of {queue} all have a call in progress.")


async def _offer_next_call(
    *,
    session: AsyncSession,
    stores: Stores,
    start_session: StartSession,
    engine: QueueEngine,
    agent: Agent,
    queue: str | None,
    progressive: bool,
) -> CallOffered | NoneEligible | None:
    redis, settings = stores.redis, stores.settings
    presence = await get_presence(session=session, redis=redis, settings=settings, agent_id=agent.id)
    if presence.state is PresenceState.RESERVED:
        held = await engine.lease_of_agent(agent.id)
        if held is not None and held.session_id is not None:
            # A lease whose session may never have started (the API stopped in between): start it now,
            # with the lease's full time ahead of it (the session renews it from then on).
            try:
                renewed = await engine.renew(user_id=held.user_id, token=held.token, now=datetime.now(UTC).timestamp())
            except StaleLease:
                held = None  # it lapsed meanwhile and put the customer back: the agent holds nobody
            else:
                held = replace(held, expires_at=renewed.expires_at)
                if progressive:
                    await _phone_ready_or_refuse(stores, agent.id)
                return await _open(
                    stores=stores,
                    engine=engine,
                    start_session=start_session,
                    agent_id=agent.id,
                    progressive=progressive,
                    lease=held,
                    resumed=True,
                )
        if held is not None:
            raise AlreadyHoldingCustomer(held.user_id)
        if await inbound.ringing_for(stores.postgres, agent.id, datetime.now(UTC)) is not None:
            # Held by a returned call's workflow while the customer's call rings for them.
            raise NextCallRefused("A customer who is calling us back is ringing for you: answer it first.")
        # Stored "reserved" with no lease behind it (written before the lease was the reservation), or
        # a lease that just lapsed: nobody is held, so the agent is simply available.
        presence = await set_presence(
            session=session,
            redis=redis,
            settings=settings,
            agent_id=agent.id,
            target=PresenceState.AVAILABLE,
            now=datetime.now(UTC),
            by=Initiator.SYSTEM,
        )
    if presence.state is not PresenceState.AVAILABLE:
        raise NextCallRefused(f"Only an available agent can take a next call (you are {presence.state.value}).")
    now = datetime.now(UTC)
    window = gate.shared_hours(clock.now(settings), gates.CallingRules.from_settings(settings))
    if not window.allowed:
        # The text names the time on the business clock; ``until`` is a real instant, as in every answer.
        until = None if window.until is None else window.until - clock.offset(settings)
        return NoneEligible(f"Outside calling hours: {window.explanation}", until)
    if not agent.queues:
        return NoneEligible("You are not assigned to any queue; ask a supervisor.")
    # Always in the queues' priority order (due callbacks first), whatever order the account lists them in.
    queues: list[str] = [q for q in QUEUE_PRIORITY if q in agent.queues and (queue is None or q == queue)]
    if not queues:
        return NoneEligible(f"You are not assigned to the {queue} queue.")
    paused: list[str] = []
    if progressive:
        open_queues = await progressive_queues(stores, queues)
        paused = [q for q in queues if q not in open_queues]
        queues = open_queues
        await _phone_ready_or_refuse(stores, agent.id)
    try:
        offer = await engine.next_call_detailed(
            agent_id=agent.id,
            queues=queues,
            trained_vulnerable=agent.trained_vulnerable,
            now=now.timestamp(),
            session_id=str(uuid.uuid4()),
            presence_key=presence_key(settings, agent.id),  # still available, checked with the lease
        )
    except AgentAlreadyHoldsLease as exc:
        raise AlreadyHoldingCustomer(exc.user_id) from None
    except AgentNotAvailable as exc:
        raise NextCallRefused(f"Only an available agent can take a next call (you are {exc.state}).") from None
    if offer.lease is None:
        reason = "Nobody in your queues can be called right now"
        held_back = [
            f"{n} {what}"
            for n, what in (
                (offer.blocked_not_before, "waiting for their next allowed time"),
                (offer.blocked_vulnerable, "needing an agent trained for vulnerable customers"),
                (offer.blocked_reserved, "reserved for another agent's callback"),
            )
            if n
        ]
        if paused:  # the agent's other queues are at their abandoned-rate ceiling: say so too
            held_back.append(f"progressive paused on {', '.join(paused)} (abandoned rate at its ceiling)")
        return NoneEligible(reason + (f" ({'; '.join(held_back)})." if held_back else "."), searched=True)
    return await _open(
        stores=stores,
        engine=engine,
        start_session=start_session,
        agent_id=agent.id,
        progressive=progressive,
        lease=offer.lease,
        resumed=False,
    )


async def _phone_ready_or_refuse(stores: Stores, agent_id: int) -> None:
    """Ofcom's 2-second rule by construction: a progressive session dials as it starts, so the agent's
    browser phone is registered (and the agent available, checked with the lease) before the customer
    is leased, let alone dialled. The same check as the pacer's ready agents (``inbound.device_ready``)."""
    if not await inbound.device_ready(stores.redis, stores.settings, agent_id):
        raise PhoneNotReady()


async def progressive_queues(stores: Stores, queues: list[str]) -> list[str]:
    """The queues a progressive agent may be given a call from: those whose abandoned rate is under
    its ceiling (Ofcom's persistent-misuse rule, dialler.pacing). A progressive session dials as it
    starts, so this is the one place a progressive call begins. None left: refused, with the reason."""
    found = await pacing.verdicts(
        stores.postgres, now=clock.instant(), amd_on=stores.settings.answering_machine_detection
    )
    paused = [found[q] for q in queues if q in found and found[q].paused]
    if paused and len(paused) == len(queues):
        raise progressive_paused(paused)
    return [q for q in queues if not (q in found and found[q].paused)]


async def _open(
    *,
    stores: Stores,
    engine: QueueEngine,
    start_session: StartSession,
    agent_id: int,
    progressive: bool,
    lease: Lease,
    resumed: bool,
    pooled: bool = False,
) -> CallOffered | None:
    """Start the session the lease names and read the customer's context meanwhile. A new lease whose
    session cannot start is given back at once; a resumed one whose session already runs is the
    agent's call in progress. None: the customer's last session is still open (see the module's
    docstring), the lease went to it, and the caller offers the next customer."""
    redis, settings = stores.redis, stores.settings
    assert lease.session_id is not None
    session_id = lease.session_id
    now = datetime.now(UTC)
    started = False

    async def start() -> None:
        nonlocal started
        started = await start_session(
            CallSessionInput(
                session_id=session_id,
                user_id=lease.user_id,
                agent_id=agent_id,
                queue=lease.queue,
                lease_token=lease.token,
                progressive=progressive,  # the session dials by itself
                pooled=pooled,
                wrap_up_timeout_s=settings.wrap_up_timeout_s,
                lease_renew_every_s=max(5, settings.lease_ttl_s // 3),
                preview_limit_s=settings.preview_limit_s,
                carrier_check_after_s=settings.carrier_check_after_s,
                carrier_check_every_s=settings.carrier_check_every_s,
            )
        )
        if not started:
            return
        await open_view(
            redis,
            settings,
            CallSessionView(
                session_id=session_id,
                user_id=lease.user_id,
                agent_id=agent_id,
                queue=lease.queue,
                state="reserved",
                call_sid=None,
                end_reason=None,
                disposition=None,
                answered=False,
                started_at=now,
                wrap_up_deadline=None,
                progressive=progressive,
            ),
        )

    load = get_context(
        redis=redis,
        prefix=settings.redis_prefix,
        replica=stores.replica,
        postgres=stores.postgres,
        user_id=lease.user_id,
    )
    try:
        _, context = await asyncio.gather(start(), load)
    except BaseException:
        if not started:
            await _give_back(engine, lease)
        raise  # a started session owns the lease: the agent sees it and can skip it
    if not started:
        if resumed:
            raise AlreadyHoldingCustomer(lease.user_id)
        await _leave_to_open_session(stores, engine, lease)
        return None
    return CallOffered(session_id=session_id, workflow_id=call_workflow_id(lease.user_id), lease=lease, context=context)


async def _leave_to_open_session(stores: Stores, engine: QueueEngine, lease: Lease) -> None:
    """The customer's last session is still open: end our lease without placing them, and give the
    lease back to that session (its agent, its token), as its own renewal would when it resumes."""
    with suppress(StaleLease):
        await engine.release(user_id=lease.user_id, token=lease.token, requeue=None, now=datetime.now(UTC).timestamp())
    async with stores.sessions() as session:
        open_call = await open_session_of_user(session, lease.user_id)
    if open_call is not None and open_call.lease_token is not None:
        await reclaim_for(engine, open_call, datetime.now(UTC))
    log.warning(
        "customer %s still has a session open: skipped for agent %s (lease %s)",
        lease.user_id,
        lease.agent_id,
        "returned to it" if open_call is not None else "held until it closes",
    )


async def _give_back(engine: QueueEngine, lease: Lease) -> None:
    """One atomic step: the lease ends and the customer is back where they were. The agent's presence
    needs nothing: ``reserved`` was the lease."""
    with suppress(StaleLease):  # expired (and put back) or taken over meanwhile: nothing of ours to undo
        await engine.give_back(user_id=lease.user_id, token=lease.token, now=datetime.now(UTC).timestamp())
