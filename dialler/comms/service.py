"""SMS conversations: threads, messages, delivery statuses, unread counts, opt-out and opt-in.

Keyword-only async services, session first. None of them commits: the caller decides what lands in
one transaction (an inbound STOP: the message, the opt-out, in one commit).

One conversation per phone number (E.164), linked to the customer whose number it is. Inbound texts
are matched on the number; a customer who changes number keeps their thread (it moves to the new
number unless that number already has a thread of its own).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import phonenumbers
from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dialler.callbacks.models import LIVE_STATUSES, Callback
from dialler.calls.models import CallSession
from dialler.comms.errors import CustomerNotFound, NoMobileNumber
from dialler.comms.keywords import InboundAction, classify, keyword_of
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.comms.templates import SENDABLE_WHEN_OPTED_OUT
from dialler.compliance import facts as compliance_facts
from dialler.compliance import gate, gates
from dialler.compliance.models import OptOut
from dialler.queues.phones import normalise_phone

__all__ = [
    "STATUS_RANK",
    "ConversationSummary",
    "InboundResult",
    "apply_status",
    "conversation_for_user",
    "customer_mobile",
    "customers_with_phone",
    "get_or_create_conversation",
    "inbound_e164",
    "is_opted_out",
    "is_uk_mobile",
    "list_conversations",
    "list_messages",
    "mark_read",
    "opt_in",
    "opt_out",
    "prepare_outbound",
    "receive_inbound",
    "send_blocked_reason",
    "status_rank",
]

# Delivery statuses, ranked: a status never moves a message backwards, and a final one never changes
# (Twilio's callbacks can arrive twice or out of order). ``pending`` (written, not yet handed to the
# carrier) and ``blocked`` (never sent: opted out, do-not-call) are ours; the rest are Twilio's.
STATUS_RANK: Final[dict[str, int]] = {
    "pending": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "blocked": 5,
    "read": 6,
}
FINAL_STATUSES: Final = frozenset(s for s, r in STATUS_RANK.items() if r >= 5)
INBOUND_STATUS: Final = "received"
_E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")
log = logging.getLogger(__name__)


def status_rank(status: str) -> int | None:
    return STATUS_RANK.get(status)


def is_uk_mobile(e164: str) -> bool:
    """UK mobiles are +447… (``normalise_phone`` already refuses 070 personal and 076 pager numbers)."""
    return e164.startswith("+447") and len(e164) == 13


def inbound_e164(raw: str) -> str | None:
    """The E.164 form of an inbound ``From``: a UK number as the queues normalise it, else any
    well-formed international number (a customer abroad can still text STOP)."""
    uk = normalise_phone(raw).e164
    if uk is not None:
        return uk
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.match(e164) else None


# --- Customers and their numbers --------------------------------------------------------------------

_USER_PHONE = text("SELECT phone_number FROM users WHERE id = :id AND deleted_at IS NULL")
# The replica stores numbers as typed ("07700 900123", "+44 (0)7700 900123", "7700900123"...), with no
# index: compare digits only, then confirm with the same normalisation the queues use. A full scan,
# only for texts from a number we have never texted (and for STOP, to find every customer with it).
_USERS_BY_DIGITS = text(
    "SELECT id, phone_number FROM users WHERE deleted_at IS NULL"
    " AND REGEXP_REPLACE(phone_number, '[^0-9]', '') IN :digits"
).bindparams(bindparam("digits", expanding=True))


async def customer_mobile(*, replica: AsyncEngine, user_id: int) -> str:
    """The customer's mobile in E.164, or :class:`CustomerNotFound` / :class:`NoMobileNumber`."""
    async with replica.connect() as conn:
        row = (await conn.execute(_USER_PHONE, {"id": user_id})).one_or_none()
    if row is None:
        raise CustomerNotFound(f"No customer {user_id}.")
    e164 = normalise_phone(row.phone_number).e164
    if e164 is None or not is_uk_mobile(e164):
        raise NoMobileNumber()
    return e164


def _digit_forms(e164: str) -> list[str]:
    digits = e164.lstrip("+")
    if not e164.startswith("+44"):
        return [digits, "00" + digits]
    nsn = e164[3:]
    return [nsn, "0" + nsn, "44" + nsn, "440" + nsn, "0044" + nsn, "00440" + nsn]


async def customers_with_phone(*, replica: AsyncEngine, phone: str) -> list[int]:
    """Every (not deleted) customer whose number is ``phone``, lowest id first."""
    async with replica.connect() as conn:
        rows = (await conn.execute(_USERS_BY_DIGITS, {"digits": _digit_forms(phone)})).all()
    return sorted(int(r.id) for r in rows if normalise_phone(r.phone_number).e164 == phone or r.phone_number == phone)


# --- Conversations ---------------------------------------------------------------------------------


async def conversation_by_phone(*, session: AsyncSession, phone: str) -> SmsConversation | None:
    return await session.scalar(select(SmsConversation).where(SmsConversation.phone_e164 == phone))


async def conversation_for_user(*, session: AsyncSession, user_id: int) -> SmsConversation | None:
    return await session.scalar(select(SmsConversation).where(SmsConversation.user_id == user_id))


async def get_or_create_conversation(*, session: AsyncSession, phone: str, user_id: int | None) -> SmsConversation:
    """The thread of ``phone``, linked to ``user_id`` when that customer has no thread yet."""
    by_phone = await conversation_by_phone(session=session, phone=phone)
    if by_phone is not None:
        if (
            by_phone.user_id is None
            and user_id is not None
            and await conversation_for_user(session=session, user_id=user_id) is None
        ):
            by_phone.user_id = user_id
            await session.flush()
        return by_phone
    if user_id is not None:
        by_user = await conversation_for_user(session=session, user_id=user_id)
        if by_user is not None:  # the customer's number changed: the thread follows them
            by_user.phone_e164 = phone
            await session.flush()
            return by_user
    await session.execute(
        insert(SmsConversation).values(phone_e164=phone, user_id=user_id, unread_count=0).on_conflict_do_nothing()
    )
    found = await conversation_by_phone(session=session, phone=phone)
    if found is None:  # lost a race on user_id with another number: keep the thread unlinked
        await session.execute(
            insert(SmsConversation).values(phone_e164=phone, user_id=None, unread_count=0).on_conflict_do_nothing()
        )
        found = await conversation_by_phone(session=session, phone=phone)
    assert found is not None
    return found


async def mark_read(*, session: AsyncSession, conversation_id: int) -> None:
    await session.execute(
        update(SmsConversation)
        .where(SmsConversation.id == conversation_id, SmsConversation.unread_count != 0)
        .values(unread_count=0)
    )


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    user_id: int | None
    phone_e164: str
    unread_count: int
    last_message_at: datetime | None
    opted_out: bool
    last_direction: str | None
    last_body: str | None


async def list_conversations(
    *,
    session: AsyncSession,
    agent_id: int | None,
    leased_user_id: int | None = None,
    unread_only: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[ConversationSummary]:
    """Most recent first. ``agent_id`` None: every conversation (supervisors); otherwise those of the
    customers the agent works on: leased to them now (``leased_user_id``) or called by them (the same
    rule as :func:`dialler.customers.access.may_work_with`)."""
    last = (
        select(SmsMessage.direction, SmsMessage.body)
        .where(SmsMessage.conversation_id == SmsConversation.id)
        .order_by(SmsMessage.created_at.desc(), SmsMessage.id.desc())
        .limit(1)
        .lateral("last")
    )
    opted = exists().where(OptOut.phone_e164 == SmsConversation.phone_e164)
    query = (
        select(SmsConversation, opted.label("opted_out"), last.c.direction, last.c.body)
        .outerjoin(last, text("true"))
        .order_by(SmsConversation.last_message_at.desc().nulls_last(), SmsConversation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if agent_id is not None:
        called = select(CallSession.user_id).where(CallSession.agent_id == agent_id)
        mine: list[ColumnElement[bool]] = [SmsConversation.user_id.in_(called)]
        if leased_user_id is not None:
            mine.append(SmsConversation.user_id == leased_user_id)
        query = query.where(or_(*mine))
    if unread_only:
        query = query.where(SmsConversation.unread_count > 0)
    rows = (await session.execute(query)).all()
    return [
        ConversationSummary(
            id=c.id,
            user_id=c.user_id,
            phone_e164=c.phone_e164,
            unread_count=c.unread_count,
            last_message_at=c.last_message_at,
            opted_out=bool(opted_out),
            last_direction=direction,
            last_body=body,
        )
        for c, opted_out, direction, body in rows
    ]


async def list_messages(
    *, session: AsyncSession, conversation_id: int, limit: int = 100, before_id: int | None = None
) -> list[SmsMessage]:
    """The newest ``limit`` messages (before ``before_id``), oldest first."""
    query = select(SmsMessage).where(SmsMessage.conversation_id == conversation_id)
    if before_id is not None:
        query = query.where(SmsMessage.id < before_id)
    newest = (await session.scalars(query.order_by(SmsMessage.id.desc()).limit(limit))).all()
    return list(reversed(newest))


# --- Opt-out ---------------------------------------------------------------------------------------


async def is_opted_out(*, session: AsyncSession, phone: str) -> bool:
    return await compliance_facts.is_opted_out(await session.connection(), phone=phone)


async def opt_out(*, session: AsyncSession, phone: str, user_id: int | None, keyword: str) -> tuple[OptOut, bool]:
    """Record the opt-out (idempotent). Returns the standing opt-out and whether this call created it."""
    created = await session.scalar(
        insert(OptOut)
        .values(phone_e164=phone, user_id=user_id, keyword=keyword[:16])
        .on_conflict_do_nothing(index_elements=["phone_e164"])
        .returning(OptOut.phone_e164)
    )
    row = await session.scalar(select(OptOut).where(OptOut.phone_e164 == phone))
    assert row is not None
    return row, created is not None


async def opt_in(*, session: AsyncSession, phone: str) -> bool:
    """Lift the opt-out; True if there was one."""
    gone = await session.scalar(delete(OptOut).where(OptOut.phone_e164 == phone).returning(OptOut.phone_e164))
    return gone is not None


async def send_blocked_reason(
    *,
    session: AsyncSession,
    phone: str,
    template: str | None,
    user_id: int | None = None,
    replica: AsyncEngine | None = None,
) -> str | None:
    """Why no text may go to ``phone`` now (checked at send time), or None: the compliance gate's
    answer for a text (opt-out, do-not-call, and a deceased or deleted customer when ``user_id`` and
    ``replica`` say whose number it is). The STOP confirmation is the one text an opted-out number gets."""
    decision = await text_decision(session=session, phone=phone, template=template, user_id=user_id, replica=replica)
    blocking = decision.blocking
    return None if blocking is None else blocking.explanation


async def text_decision(
    *,
    session: AsyncSession,
    phone: str,
    template: str | None,
    user_id: int | None = None,
    replica: AsyncEngine | None = None,
) -> gate.Decision:
    now = datetime.now(UTC)
    facts = await compliance_facts.load_for_text(
        await session.connection(), phone=phone, now=now, user_id=user_id, replica=replica
    )
    return gate.check(
        facts,
        channel=gate.Channel.SMS,
        at=now,
        rules=gates.CallingRules(),
        stop_confirmation=template in SENDABLE_WHEN_OPTED_OUT,
    )


# --- Messages --------------------------------------------------------------------------------------


async def prepare_outbound(
    *,
    session: AsyncSession,
    conversation_id: int,
    body: str,
    template: str | None,
    idempotency_key: str,
    agent_id: int | None,
    at: datetime,
) -> SmsMessage:
    """The outbound message for ``idempotency_key``, written as ``pending`` the first time (a retried
    step finds the same row, so one step is one message)."""
    await session.execute(
        insert(SmsMessage)
        .values(
            conversation_id=conversation_id,
            direction="outbound",
            body=body,
            template=template,
            idempotency_key=idempotency_key,
            status="pending",
            agent_id=agent_id,
            created_at=at,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    message = await session.scalar(select(SmsMessage).where(SmsMessage.idempotency_key == idempotency_key))
    assert message is not None
    await session.execute(
        update(SmsConversation)
        .where(
            SmsConversation.id == message.conversation_id,
            or_(SmsConversation.last_message_at.is_(None), SmsConversation.last_message_at < at),
        )
        .values(last_message_at=at)
    )
    return message


async def apply_status(
    *, session: AsyncSession, status: str, at: datetime, sid: str | None = None, message_id: int | None = None
) -> bool:
    """Move an outbound message to ``status`` if that is a step forward; True if it changed.

    Matched by our id (the status callback URL carries it, so a callback that overtakes the send's
    own bookkeeping still lands) or by Twilio's sid. Unknown statuses, repeats and late arrivals of an
    earlier status change nothing."""
    rank = status_rank(status)
    if rank is None or (sid is None and message_id is None):
        return False
    earlier = [s for s, r in STATUS_RANK.items() if r < rank]
    conditions = [SmsMessage.direction == "outbound", SmsMessage.status.in_(earlier)]
    if message_id is not None:
        conditions.append(SmsMessage.id == message_id)
        if sid is not None:
            conditions.append(or_(SmsMessage.twilio_sid.is_(None), SmsMessage.twilio_sid == sid))
    else:
        conditions.append(SmsMessage.twilio_sid == sid)
    values: dict[str, object] = {"status": status, "status_updated_at": at}
    if sid is not None:
        values["twilio_sid"] = func.coalesce(SmsMessage.twilio_sid, sid)
    changed = await session.scalar(
        update(SmsMessage).where(and_(*conditions)).values(**values).returning(SmsMessage.id)
    )
    return changed is not None


async def record_inbound(
    *, session: AsyncSession, conversation: SmsConversation, body: str, sid: str, at: datetime, unread: bool
) -> tuple[SmsMessage, bool]:
    """Thread an inbound text (deduplicated on Twilio's MessageSid). Returns it and whether it is new."""
    created = await session.scalar(
        insert(SmsMessage)
        .values(
            conversation_id=conversation.id,
            direction="inbound",
            body=body,
            twilio_sid=sid,
            status=INBOUND_STATUS,
            created_at=at,
            status_updated_at=at,
        )
        .on_conflict_do_nothing(index_elements=["twilio_sid"])
        .returning(SmsMessage.id)
    )
    message = await session.scalar(select(SmsMessage).where(SmsMessage.twilio_sid == sid))
    assert message is not None
    if created is not None:
        await session.execute(
            update(SmsConversation)
            .where(SmsConversation.id == conversation.id)
            .values(
                unread_count=SmsConversation.unread_count + (1 if unread else 0),
                last_message_at=func.greatest(func.coalesce(SmsConversation.last_message_at, at), at),
            )
        )
    return message, created is not None


async def last_outbound_template(*, session: AsyncSession, conversation_id: int) -> str | None:
    """The template of the last text we sent (or tried to) on this thread; None for free text."""
    row = (
        await session.execute(
            select(SmsMessage.template)
            .where(SmsMessage.conversation_id == conversation_id, SmsMessage.direction == "outbound")
            .order_by(SmsMessage.created_at.desc(), SmsMessage.id.desc())
            .limit(1)
        )
    ).one_or_none()
    return None if row is None else row.template


async def has_live_callback(*, session: AsyncSession, user_id: int) -> bool:
    return bool(
        await session.scalar(select(exists().where(Callback.user_id == user_id, Callback.status.in_(LIVE_STATUSES))))
    )


# --- An inbound text, end to end (the database half) ---------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    conversation_id: int
    message_id: int
    duplicate: bool  # Twilio delivered this MessageSid before
    action: InboundAction
    user_ids: tuple[int, ...]  # the customers the action applies to
    opt_out_episode: int | None = None  # identifies the standing opt-out: one confirmation per episode
    opted_in: bool = False  # this text lifted an opt-out


async def receive_inbound(
    *, session: AsyncSession, replica: AsyncEngine, phone: str, body: str, sid: str, at: datetime
) -> InboundResult:
    """Thread the text and apply what it asks (opt-out, opt-in) to the database; the caller commits,
    then does the rest (queues, callbacks, confirmations), which is idempotent on a retried webhook.

    A retried webhook (same MessageSid) records nothing twice: only an opt-out that still stands is
    reported again, so the caller can finish what a failed first attempt left undone."""
    conversation = await conversation_by_phone(session=session, phone=phone)
    found: list[int] | None = None
    if conversation is None or conversation.user_id is None:
        found = await _customers_if_reachable(replica, phone)
    conversation = await get_or_create_conversation(session=session, phone=phone, user_id=found[0] if found else None)
    user_id = conversation.user_id
    opted = await is_opted_out(session=session, phone=phone)
    template = await last_outbound_template(session=session, conversation_id=conversation.id)
    live = user_id is not None and await has_live_callback(session=session, user_id=user_id)
    action = classify(body, opted_out=opted, last_outbound_template=template, live_callback=live)
    message, created = await record_inbound(
        session=session, conversation=conversation, body=body, sid=sid, at=at, unread=action is InboundAction.MESSAGE
    )
    if action is InboundAction.OPT_OUT:
        if found is None:
            found = await _customers_if_reachable(replica, phone)
        users = tuple(sorted(set(found) | ({user_id} if user_id is not None else set())))
        standing: OptOut | None
        if created:
            standing, _ = await opt_out(session=session, phone=phone, user_id=user_id, keyword=keyword_of(body))
        else:
            standing = await session.scalar(select(OptOut).where(OptOut.phone_e164 == phone))
        if standing is None:  # a retry, and opted back in since: the retry must not undo that
            return InboundResult(conversation.id, message.id, True, InboundAction.MESSAGE, ())
        episode = int(standing.created_at.timestamp() * 1_000_000)
        return InboundResult(conversation.id, message.id, not created, action, users, opt_out_episode=episode)
    if not created:
        return InboundResult(conversation.id, message.id, True, action, ())
    if action is InboundAction.OPT_IN:
        lifted = await opt_in(session=session, phone=phone)
        users = tuple(sorted(set(await _customers_if_reachable(replica, phone)) | set(_one(user_id))))
        return InboundResult(conversation.id, message.id, False, action, users, opted_in=lifted)
    return InboundResult(conversation.id, message.id, False, action, _one(user_id))


async def _customers_if_reachable(replica: AsyncEngine, phone: str) -> list[int]:
    """:func:`customers_with_phone`, or none when the replica is down: a STOP must be recorded (and
    honoured by every call and text, which check the opt-out by number) even then; the next rebuild
    takes the other customers with the number out of the queues."""
    try:
        return await customers_with_phone(replica=replica, phone=phone)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("replica unreachable while matching an inbound text to customers: %s", type(exc).__name__)
        return []


def _one(user_id: int | None) -> tuple[int, ...]:
    return () if user_id is None else (user_id,)
