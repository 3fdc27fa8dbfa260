"""Call-session activities. Each is idempotent: keyed by the session id (unique rows), by the lease's
fencing token (Redis), or by an idempotency key derived from the workflow id and step (Twilio)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from dialler import clock, failpoints
from dialler.agents.errors import AgentsError
from dialler.agents.models import Agent
from dialler.agents.presence import Initiator, PresenceState, set_presence
from dialler.calls import received
from dialler.calls.answered import abandoned_unseen
from dialler.calls.dispositions import EFFECTS, Disposition
from dialler.calls.leases import open_session_of, reclaim_for
from dialler.calls.messages import (
    CallStatusEvent,
    CheckCallInput,
    ClaimedAgentInput,
    FinishInput,
    FinishResult,
    FollowUp,
    FollowUpInput,
    OpenSessionInput,
    PlaceCallInput,
    PresenceInput,
    ReceivedOutcomeRead,
    RenewLeaseInput,
    SessionProgress,
    TakeReceivedInput,
    agent_or_none,
)
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt
from dialler.calls.view import update_view
from dialler.comms.messages import MagicLinkInput, MagicLinkPurpose
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.comms.templates import TemplateName
from dialler.compliance import dnc, flags, gate, gates, reviews
from dialler.compliance import facts as compliance_facts
from dialler.compliance.basis import call_basis
from dialler.compliance.models import ComplianceDecision, DoNotCall
from dialler.compliance.records import record_decision
from dialler.customers.context import forget
from dialler.integrations.twilio import Telephony, TelephonyError
from dialler.outbound import attempts
from dialler.queues import rebuild
from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES
from dialler.queues.engine import StaleLease
from dialler.queues.phones import normalise_phone
from dialler.queues.runtime import queue_engine
from dialler.reports import rollups
from dialler.runtime import Stores

_FIRST_PENDING = text(
    "SELECT cr.id, cr.claim_id FROM claim_requirements cr JOIN claims c ON c.id = cr.claim_id"
    " WHERE c.user_id = :user AND c.status IN :active AND c.deleted_at IS NULL"
    " AND cr.status = 'PENDING' AND cr.deleted_at IS NULL ORDER BY cr.id LIMIT 1"
).bindparams(bindparam("active", expanding=True))

# Tries of the carrier at a session's finish before an answered call it cannot vouch for is counted
# abandoned (the finish's retries are 1 s, then 2 s apart).
CARRIER_TRIES_AT_FINISH = 3


def webhook_urls(base_url: str, workflow_id: str, session_id: str) -> tuple[str, str]:
    """(TwiML on answer, status callback) for a server-placed call; the workflow id rides in the
    signed URL, so a webhook can only ever signal the session it was issued for. The answer's URL
    names the session too: it is read from PostgreSQL, with no worker needed."""
    hooks = f"{base_url.rstrip('/')}/api/v1/webhooks/twilio"
    return f"{hooks}/voice-answer?wf={workflow_id}&session={session_id}", f"{hooks}/voice-status?wf={workflow_id}"


class CallActivities:
    def __init__(self, stores: Stores, telephony: Telephony) -> None:
        self.stores = stores
        self.telephony = telephony
        self.engine = queue_engine(stores)
        self.rules = gates.CallingRules.from_settings(stores.settings)

    @activity.defn
    async def open_session(self, input: OpenSessionInput) -> None:
        async with self.stores.postgres.begin() as conn:
            phone = await self._phone(input.user_id)
            await conn.execute(
                insert(CallSession)
                .values(
                    id=uuid.UUID(input.session_id),
                    workflow_id=input.workflow_id,
                    user_id=input.user_id,
                    agent_id=agent_or_none(input.agent_id),  # a pooled call: the agent comes at the answer
                    queue=input.queue,
                    phone_e164=phone or "",
                    lease_token=input.lease_token,
                    status="reserved",
                    progressive=input.progressive,
                    started_at=input.started_at,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )

    @activity.defn
    async def place_call(self, input: PlaceCallInput) -> str:
        """Dial the customer, once: whichever worker retries this, a call the carrier has is adopted,
        never placed again (:mod:`dialler.outbound.attempts`)."""
        key = attempts.dial_key(input.session_id)
        try:
            async with attempts.exclusive(self.stores.carrier_locks, key) as lock:
                return await self._dial_once(input, key, lock)
        except attempts.AttemptBusy as exc:
            raise ApplicationError(str(exc), type="DialUnderWay") from None

    async def _dial_once(self, input: PlaceCallInput, key: str, lock: AsyncConnection) -> str:
        settings = self.stores.settings
        session_id = uuid.UUID(input.session_id)
        async with self.stores.postgres.connect() as conn:
            stored = await conn.scalar(select(CallSession.twilio_call_sid).where(CallSession.id == session_id))
        if stored:
            return stored  # a retry after the sid was stored (or a status callback recorded it)
        earlier = await attempts.find(self.stores.postgres, key)
        if earlier is not None:  # an earlier try began this dial and never recorded its end
            sid = earlier.sid or await self._carrier_has(session_id, earlier.started_at)
            if sid is not None:
                await self._store_sid(session_id, key, sid)
                return sid
        lease = await self.engine.lease_of(input.user_id)
        if lease is None or lease.agent_id != input.agent_id or lease.token != input.lease_token:
            raise ApplicationError(
                "the customer is not leased to this agent any more", type="LeaseLost", non_retryable=True
            )
        number = await self._phone(input.user_id)
        if number is not None:  # held until this dial is recorded: see attempts.hold_number
            await attempts.hold_number(lock, number)
        phone = await self._last_check(input)
        async with self.stores.postgres.begin() as conn:
            # The session names the number dialled: it is the one a retry asks the carrier about.
            await conn.execute(
                update(CallSession)
                .where(CallSession.id == session_id, CallSession.phone_e164 != phone)
                .values(phone_e164=phone)
            )
        await attempts.begin(self.stores.postgres, key, channel="voice")
        await failpoints.reach(settings, "dial.before_create")
        twiml_url, status_url = webhook_urls(settings.public_base_url, input.workflow_id, input.session_id)
        try:
            sid = await self.telephony.place_call(
                to=phone,
                from_=settings.caller_id,
                twiml_url=twiml_url,
                status_callback=status_url,
                machine_detection=settings.answering_machine_detection,
                idempotency_key=f"{input.workflow_id}:{input.session_id}:dial",
            )
        except TelephonyError as exc:
            raise ApplicationError(str(exc), type="TelephonyRejected", non_retryable=not exc.is_retryable) from None
        await failpoints.reach(settings, "dial.before_store")
        await self._store_sid(session_id, key, sid)
        return sid

    async def _carrier_has(self, session_id: uuid.UUID, since: datetime) -> str | None:
        """The call an earlier try of this dial placed, if the carrier has one: to this session's number
        from our caller id since the try began, and not a call another session owns."""
        since = since - attempts.CLOCK_SKEW
        async with self.stores.postgres.connect() as conn:
            phone = await conn.scalar(select(CallSession.phone_e164).where(CallSession.id == session_id))
            owned = await conn.scalars(
                select(CallSession.twilio_call_sid).where(
                    CallSession.phone_e164 == phone,
                    CallSession.id != session_id,
                    CallSession.twilio_call_sid.is_not(None),
                    CallSession.started_at >= since - timedelta(days=1),
                )
            )
            exclude = frozenset(sid for sid in owned if sid)
        if not phone:
            return None
        try:
            return await self.telephony.find_call(
                to=phone, from_=self.stores.settings.caller_id, since=since, exclude=exclude
            )
        except TelephonyError as exc:
            # Not knowing whether the customer was rung is no reason to ring her: try again later.
            raise ApplicationError(str(exc), type="TelephonyUnavailable") from None

    async def _store_sid(self, session_id: uuid.UUID, key: str, sid: str) -> None:
        async with self.stores.postgres.begin() as conn:
            await conn.execute(
                update(CallSession)
                .where(CallSession.id == session_id, CallSession.twilio_call_sid.is_(None))
                .values(twilio_call_sid=sid)
            )
        await attempts.settle(self.stores.postgres, key, sid)

    @activity.defn
    async def record_progress(self, input: SessionProgress) -> None:
        values: dict[str, object] = {"status": input.state, "updated_at": datetime.now(UTC)}
        if input.call_sid:
            values["twilio_call_sid"] = input.call_sid
        if input.state == "in_progress":
            values["answered_at"] = input.at
        if input.state == "ended" or input.ended:
            values["ended_at"] = input.at
            values["end_reason"] = input.end_reason
        async with self.stores.postgres.begin() as conn:
            await conn.execute(
                update(CallSession).where(CallSession.id == uuid.UUID(input.session_id)).values(**values)
            )
        await update_view(
            self.stores.redis,
            self.stores.settings,
            input.session_id,
            state=input.state,
            call_sid=input.call_sid,
            end_reason=input.end_reason,
            answered=input.answered,
            wrap_up_deadline=input.wrap_up_deadline,
            answered_by=input.answered_by,
        )
        if input.presence is not None:
            await self._move_agent(input.presence)

    @activity.defn
    async def renew_lease(self, input: RenewLeaseInput) -> bool:
        now = datetime.now(UTC)
        try:
            await self.engine.renew(user_id=input.user_id, token=input.lease_token, now=now.timestamp())
        except StaleLease as exc:
            if exc.reason not in ("no_lease", "expired"):
                activity.logger.warning("lease renewal refused: %s", exc.reason)
                return False
            # Redis lost the lease, or it lapsed while the worker was away: the open session re-takes
            # it (fenced by its own token and agent), so the customer is not offered to another agent.
            async with self.stores.sessions() as session:
                call = await open_session_of(session, input.user_id, input.lease_token)
            if call is None or await reclaim_for(self.engine, call, now) is None:
                activity.logger.warning("lease renewal refused: %s", exc.reason)
                return False
        return True

    @activity.defn
    async def claimed_agent(self, input: ClaimedAgentInput) -> int | None:
        """The agent a pooled call's answer claimed, as the answer's webhook recorded it on the
        session's row (None: nobody was claimed)."""
        async with self.stores.postgres.connect() as conn:
            found = await conn.scalar(select(CallSession.agent_id).where(CallSession.id == uuid.UUID(input.session_id)))
        return int(found) if found is not None else None

    @activity.defn
    async def set_presence(self, input: PresenceInput) -> None:
        """Kept for session histories recorded before presence moved with the call's progress."""
        await self._move_agent(input)

    async def _move_agent(self, input: PresenceInput) -> None:
        if agent_or_none(input.agent_id) is None:  # a pooled call nobody took: no agent to move
            return
        async with self.stores.sessions() as session:
            try:
                await set_presence(
                    session=session,
                    redis=self.stores.redis,
                    settings=self.stores.settings,
                    agent_id=input.agent_id,
                    target=PresenceState(input.state),
                    now=datetime.now(UTC),
                    by=Initiator.SYSTEM,
                )
            except AgentsError as exc:
                # Presence follows the call, never blocks it. A warning: a refused system move can leave
                # the agent stranded until the reconciliation (leases.free_stranded_agents) frees them.
                activity.logger.warning("presence of agent %s not moved to %s: %s", input.agent_id, input.state, exc)

    @activity.defn
    async def finish_session(self, input: FinishInput) -> FinishResult:
        """Record the outcome and the attempt, apply the disposition's effects, release the lease, and
        free the agent (an abandoned call had no wrap-up: on_call → wrap_up → available)."""
        disposition = Disposition(input.disposition)
        effects = EFFECTS[disposition]
        session_id = uuid.UUID(input.session_id)
        agent_id = agent_or_none(input.agent_id)  # none: a pooled call no agent took
        phone = await self._phone(input.user_id)
        abandoned = input.abandoned or await self._abandoned_unseen(input, session_id)
        async with self.stores.postgres.begin() as conn:
            await conn.execute(
                insert(CallOutcome)
                .values(
                    call_session_id=session_id,
                    user_id=input.user_id,
                    agent_id=agent_id,
                    disposition=disposition.value,
                    notes=input.notes,
                    callback_at=input.callback_at,
                    recorded_at=input.finished_at,
                )
                .on_conflict_do_nothing(index_elements=["call_session_id"])
            )
            attempted_at = datetime.now(UTC)
            # A dial the compliance gate refused never rang: it is on record as a refusal, not an attempt.
            refused = (
                await conn.scalar(
                    select(ComplianceDecision.allowed).where(
                        ComplianceDecision.call_session_id == session_id, ComplianceDecision.path == "dial"
                    )
                )
                is False
            )
            dialled = input.end_reason is not None and not input.returned_call
            if dialled and phone and not refused:  # a call was dialled: it counts
                await conn.execute(
                    insert(ContactAttempt)
                    .values(
                        user_id=input.user_id,
                        phone_e164=phone,
                        channel="voice",
                        call_session_id=session_id,
                        agent_id=agent_id,
                        result=disposition.value if not abandoned else "abandoned",
                        abandoned=abandoned,
                        attempted_at=attempted_at,
                    )
                    .on_conflict_do_nothing(index_elements=["call_session_id"])
                )
            if effects.do_not_call and phone:
                await conn.execute(
                    insert(DoNotCall)
                    .values(
                        phone_e164=phone,
                        user_id=input.user_id,
                        source="agent",
                        reason=disposition.value,
                        added_by_agent_id=agent_id,
                    )
                    .on_conflict_do_nothing(index_elements=["phone_e164"])
                )
            if disposition is Disposition.VULNERABLE_FLAGGED:
                # Before the release re-places the customer: from this call on, trained agents only.
                await flags.flag_vulnerable_on_outcome(
                    conn, user_id=input.user_id, agent_id=agent_id, session_id=session_id, at=input.finished_at
                )
            if effects.needs_review:
                # In the outcome's transaction: an outcome that needs a person never reaches nobody.
                await reviews.open_for_outcome(
                    conn,
                    disposition=disposition,
                    session_id=session_id,
                    user_id=input.user_id,
                    agent_id=agent_id,
                    at=input.finished_at,
                )
            # The outcome the API kept for this session is applied now: never withdrawn later.
            await received.mark_claimed(
                conn, session_id=input.session_id, disposition=disposition.value, at=input.finished_at
            )
            await conn.execute(
                update(CallSession)
                .where(CallSession.id == session_id, CallSession.closed_at.is_(None))
                .values(status="closed", closed_at=input.finished_at, updated_at=datetime.now(UTC))
            )
            # A call ending after its day was rolled up (begun before midnight, or finished late) rolls
            # that day again, in this transaction: the reports' rollups keep agreeing with the raw rows.
            started = await conn.scalar(select(CallSession.started_at).where(CallSession.id == session_id))
            touched = [input.finished_at, attempted_at] + ([started] if started else [])
            await rollups.reroll_if_rolled(conn, touched, at=attempted_at)
        await update_view(
            self.stores.redis, self.stores.settings, input.session_id, state="closed", disposition=input.disposition
        )
        result = await self._release(input, effects.requeue, effects.requeue_after_days)
        if effects.do_not_call and phone:  # the number is listed, not the customer: its household too
            await dnc.replace_holders(self.stores, phone, besides=input.user_id)
        if input.abandoned:
            await self._move_agent(PresenceInput(input.agent_id, "wrap_up"))
        await self._move_agent(PresenceInput(input.agent_id, "available"))
        return result

    @activity.defn
    async def take_received_outcome(self, input: TakeReceivedInput) -> ReceivedOutcomeRead | None:
        """The outcome the API kept for this session while it could not deliver it (claimed: from now
        on it is this session's to apply), or None."""
        async with self.stores.postgres.begin() as conn:
            return await received.claim(conn, session_id=input.session_id, at=datetime.now(UTC))

    @activity.defn
    async def plan_follow_up(self, input: FollowUpInput) -> FollowUp | None:
        """The text that follows the call, or None when there is nothing to send: no pending
        requirement left to upload for, or a missed-call text already sent in the last 24 hours."""
        if input.kind == "upload_link":
            async with self.stores.replica.connect() as conn:
                pending = (
                    await conn.execute(_FIRST_PENDING, {"user": input.user_id, "active": list(ACTIVE_CLAIM_STATUSES)})
                ).first()
            if pending is None:
                return None
            link = MagicLinkInput(
                input.user_id, str(MagicLinkPurpose.UPLOAD), pending.claim_id, pending.id, input.agent_id
            )
            return FollowUp(link=link)
        since = datetime.now(UTC) - timedelta(hours=24)
        async with self.stores.postgres.connect() as conn:
            recent = await conn.scalar(
                select(SmsMessage.id)
                .join(SmsConversation, SmsConversation.id == SmsMessage.conversation_id)
                .where(
                    SmsConversation.user_id == input.user_id,
                    SmsMessage.template == str(TemplateName.MISSED_CALL),
                    SmsMessage.created_at >= since,
                )
                .limit(1)
            )
        return None if recent is not None else FollowUp(template=str(TemplateName.MISSED_CALL))

    @activity.defn
    async def hangup(self, call_sid: str) -> None:
        await self.telephony.hangup(call_sid)

    @activity.defn
    async def check_call(self, input: CheckCallInput) -> CallStatusEvent | None:
        """What the carrier says of the session's call now, as the status callback would have said it
        (the session acts on it as on the callback); None when the carrier has no such call. A read:
        retrying it changes nothing. The call's numbers never leave the adapter."""
        try:
            call = await self.telephony.fetch_call(input.call_sid)
        except TelephonyError as exc:
            raise ApplicationError(str(exc), type="TelephonyUnavailable", non_retryable=not exc.is_retryable) from None
        if call is None:
            activity.logger.warning(
                "call %s of session %s: the carrier has no such call", input.call_sid, input.session_id
            )
            return None
        activity.logger.info("call %s of session %s is %s at the carrier", call.sid, input.session_id, call.status)
        return CallStatusEvent(
            call_sid=call.sid, status=call.status, duration_s=call.duration_s, answered_by=call.answered_by
        )

    # --- helpers -----------------------------------------------------------------------------------

    async def _abandoned_unseen(self, input: FinishInput, session_id: uuid.UUID) -> bool:
        """Whether an answered call that nobody recorded at the answer was abandoned, by the carrier's
        record (``answered.abandoned_unseen``). The web process records every call it decides at the
        answer (abandoned, or a machine); one it never saw — it was down, and the customer heard the
        fallback's information message (or Twilio's apology) — still counts towards the abandoned
        rate and locks the number for 72 h. A carrier that cannot say after a few tries: counted
        abandoned (the side of the rule that protects the customer), with a warning."""
        if not input.answered or input.returned_call or input.end_reason is None:
            return False
        async with self.stores.postgres.connect() as conn:
            call_sid = await conn.scalar(select(CallSession.twilio_call_sid).where(CallSession.id == session_id))
            decided = await conn.scalar(select(ContactAttempt.id).where(ContactAttempt.call_session_id == session_id))
        if call_sid is None or decided is not None:
            return False
        try:
            call, put_through = await asyncio.gather(
                self.telephony.fetch_call(call_sid), self.telephony.agent_put_through(call_sid)
            )
        except TelephonyError as exc:
            if activity.info().attempt < CARRIER_TRIES_AT_FINISH:
                raise ApplicationError(str(exc), type="TelephonyUnavailable") from None
            activity.logger.warning(
                "session %s: the carrier could not say whether an agent took the answered call; counted abandoned",
                input.session_id,
            )
            return True
        abandoned = abandoned_unseen(
            agent_put_through=put_through,
            duration_s=call.duration_s if call else None,
            allowance_s=self.stores.settings.abandon_after_answer_s,
        )
        if abandoned:
            activity.logger.warning(
                "session %s: answered with no agent put through (%s s on the line): counted abandoned",
                input.session_id,
                call.duration_s if call else None,
            )
        return abandoned

    async def _release(self, input: FinishInput, requeue: bool, after_days: int) -> FinishResult:
        now = datetime.now(UTC)
        entry = None
        if requeue:
            decisions = await rebuild.decisions_for(
                replica=self.stores.replica,
                postgres=self.stores.postgres,
                now=now,
                settings=self.stores.settings,
                user_ids=[input.user_id],
            )
            entry = decisions[0].entry if decisions else None
            if entry is not None and after_days:
                later = (now + timedelta(days=after_days)).timestamp()
                entry = replace(entry, not_before=max(entry.not_before or 0, later))
        try:
            await self.engine.release(
                user_id=input.user_id, token=input.lease_token, requeue=entry, now=now.timestamp()
            )
        except StaleLease as exc:
            # Retried after a release that went through, or the lease lapsed and the customer went back:
            # either way, put them where the rules say now (unless another agent holds them).
            holder = await self.engine.lease_of(input.user_id)
            if holder is None:
                if entry is not None:
                    await self.engine.upsert(entry)
                else:
                    await self.engine.remove(input.user_id)
            activity.logger.info("lease of user %s already released: %s", input.user_id, exc.reason)
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [input.user_id])
        return FinishResult(requeued=entry is not None, not_before=entry.not_before if entry else None)

    async def _phone(self, user_id: int) -> str | None:
        """The number to record a session or an attempt against; whether it may be dialled is the
        compliance gate's question (:meth:`_last_check`), never this one's."""
        async with self.stores.replica.connect() as conn:
            raw = await conn.scalar(text("SELECT phone_number FROM users WHERE id = :id"), {"id": user_id})
        return normalise_phone(raw).e164

    async def _last_check(self, input: PlaceCallInput) -> str:
        """The last line of defence before a number is dialled: the whole compliance gate, at the
        compliance clock's now, for this agent. The decision is recorded either way (a refusal is a
        record with its reasons, not only a log line); the number is returned only when allowed."""
        settings = self.stores.settings
        now = clock.now(settings)
        found = await compliance_facts.load(
            replica=self.stores.replica,
            postgres=self.stores.postgres,
            user_ids=[input.user_id],
            now=now,
            cooloff=self.rules.abandoned_cooloff,
            dialling_session=input.session_id,
        )
        facts = found.get(input.user_id)
        if facts is None:  # gone from the replica altogether: as deleted as a customer can be
            facts = gate.ContactFacts(user_id=input.user_id, phone_e164=None, deleted=True)
        async with self.stores.postgres.connect() as conn:
            # A pooled call's agent is not known yet: judged as for an untrained agent.
            trained = bool(await conn.scalar(select(Agent.trained_vulnerable).where(Agent.id == input.agent_id)))
            queue = await conn.scalar(select(CallSession.queue).where(CallSession.id == uuid.UUID(input.session_id)))
        decision = gate.check(
            facts, channel=gate.Channel.VOICE, at=now, rules=self.rules, agent_trained_vulnerable=trained
        )
        # Which rules, as well as which facts: settings change, and an old decision must still read right.
        versions = {**decision.versions, "nation": facts.nation, "rules": self.rules.summary, "agent_trained": trained}
        decision = replace(decision, versions=versions)
        async with self.stores.postgres.begin() as conn:
            await record_decision(
                conn,
                decision,
                user_id=input.user_id,
                path="dial",
                call_session_id=input.session_id,
                agent_id=agent_or_none(input.agent_id),
                basis=call_basis(queue) if queue else None,
            )
        if not decision.allowed or facts.phone_e164 is None:
            # Rule codes only: the reasons (kept in compliance_decisions) are for people, not logs.
            blocking = decision.blocking
            activity.logger.info(
                "dial to user %s refused by %s", input.user_id, blocking.rule if blocking else "no_callable_number"
            )
            raise ApplicationError(decision.summary, type="NotCallable", non_retryable=True)
        return facts.phone_e164
