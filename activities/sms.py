"""SMS activities: send a text (template or prepared), issue and text a magic link, record its result.

Idempotent: every outbound text is one ``sms_messages`` row keyed by its workflow id and step
(``idempotency_key``, unique), written ``pending`` before the carrier is asked; a retry finds the row
and does not text twice once it has gone. Whether a number may be texted is checked at send time,
every time: an opt-out that lands a second before the send still stops it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from dialler import failpoints
from dialler.calls.models import ContactAttempt
from dialler.comms import magic_links
from dialler.comms.errors import CommsError
from dialler.comms.messages import (
    IssueMagicLinkInput,
    MagicLinkIssued,
    MagicLinkPurpose,
    MagicLinkResult,
    RecordLinkResultInput,
    SendSmsInput,
    SendSmsRequest,
    SendStatus,
    SmsOutcome,
)
from dialler.comms.models import MagicLink, SmsConversation, SmsMessage
from dialler.comms.service import (
    FINAL_STATUSES,
    apply_status,
    conversation_for_user,
    customer_mobile,
    get_or_create_conversation,
    prepare_outbound,
    send_blocked_reason,
)
from dialler.comms.templates import TemplateContext, TemplateName, describe_validity, render
from dialler.customers.context import forget
from dialler.integrations.twilio import SmsSent, Telephony, TelephonyError
from dialler.outbound import attempts
from dialler.runtime import Stores

SMS_STATUS_PATH = "/api/v1/webhooks/twilio/sms-status"
UNSUBSCRIBED = 21610  # Twilio: the recipient texted STOP to our number (Twilio blocks it too)


def sms_status_url(base_url: str, message_id: int) -> str:
    """The status callback of one message; our id rides in the signed URL, so a callback that
    overtakes the send's own bookkeeping still finds its message."""
    return f"{base_url.rstrip('/')}{SMS_STATUS_PATH}?m={message_id}"


def _outcome_of(status: str) -> SendStatus:
    if status == "blocked":
        return SendStatus.BLOCKED
    if status in ("failed", "undelivered", "canceled"):
        return SendStatus.FAILED
    return SendStatus.SENT


class SmsActivities:
    def __init__(self, stores: Stores, telephony: Telephony) -> None:
        self.stores = stores
        self.telephony = telephony

    # --- texts -------------------------------------------------------------------------------------

    @activity.defn
    async def send(self, request: SendSmsRequest) -> SmsOutcome:
        sms = request.sms
        async with self.stores.sessions() as session:
            message = await self._message(session, request)
            if message is None:
                try:
                    conversation = await self._recipient(session, sms)
                    body = render(sms.template or "", TemplateContext.from_settings(self.stores.settings), sms.params)
                except CommsError as exc:
                    activity.logger.info("text %s not sent: %s", request.idempotency_key, exc.code)
                    return SmsOutcome(SendStatus.BLOCKED, None, exc.message)
                message = await prepare_outbound(
                    session=session,
                    conversation_id=conversation.id,
                    body=body,
                    template=sms.template,
                    idempotency_key=request.idempotency_key,
                    agent_id=sms.agent_id,
                    at=datetime.now(UTC),
                )
                await session.commit()
            return await self._deliver(session, message)

    @activity.defn
    async def give_up(self, request: SendSmsRequest) -> None:
        """Retries ran out: the text is marked failed (it never left, or its fate is unknown)."""
        async with self.stores.sessions() as session:
            message = await self._message(session, request)
            if message is not None:
                await apply_status(session=session, message_id=message.id, status="failed", at=datetime.now(UTC))
                await session.commit()

    async def _message(self, session: AsyncSession, request: SendSmsRequest) -> SmsMessage | None:
        if request.sms.message_id is not None:
            return await session.get(SmsMessage, request.sms.message_id)
        return await session.scalar(select(SmsMessage).where(SmsMessage.idempotency_key == request.idempotency_key))

    async def _recipient(self, session: AsyncSession, sms: SendSmsInput) -> SmsConversation:
        if sms.conversation_id is not None:
            conversation = await session.get(SmsConversation, sms.conversation_id)
            if conversation is None:
                raise CommsError("the conversation no longer exists")
            return conversation
        if sms.user_id is None:
            raise CommsError("a text needs a customer or a conversation")
        phone = await customer_mobile(replica=self.stores.replica, user_id=sms.user_id)
        return await get_or_create_conversation(session=session, phone=phone, user_id=sms.user_id)

    async def _deliver(
        self,
        session: AsyncSession,
        message: SmsMessage,
        *,
        body: str | None = None,
        carrier_key: str | None = None,
        locked: bool = False,
    ) -> SmsOutcome:
        """Hand a pending message to the carrier, once (whichever worker retries this: see
        :mod:`dialler.outbound.attempts`), unless the number may not be texted (now). ``locked``: the
        caller holds a lock that covers this message (a magic link's)."""
        if message.status != "pending":  # a retry after the carrier took it (or it was refused)
            return SmsOutcome(_outcome_of(message.status), message.id)
        key = attempts.sms_key(message.id)
        if locked:
            return await self._deliver_once(session, message, key, body=body or message.body, carrier_key=carrier_key)
        await session.commit()  # no pooled connection held while the lock is taken
        try:
            async with attempts.exclusive(self.stores.carrier_locks, key):
                await session.refresh(message)  # as the try before us left it
                if message.status != "pending":
                    return SmsOutcome(_outcome_of(message.status), message.id)
                return await self._deliver_once(
                    session, message, key, body=body or message.body, carrier_key=carrier_key
                )
        except attempts.AttemptBusy as exc:
            raise ApplicationError(str(exc), type="SendUnderWay") from None

    async def _deliver_once(
        self, session: AsyncSession, message: SmsMessage, key: str, *, body: str, carrier_key: str | None
    ) -> SmsOutcome:
        conversation = await session.get(SmsConversation, message.conversation_id)
        assert conversation is not None
        if (earlier := await self._sent_before(key, conversation.phone_e164)) is not None:
            await self._record_sent(session, message, key, earlier)
            return SmsOutcome(SendStatus.SENT, message.id)
        blocked = await send_blocked_reason(
            session=session,
            phone=conversation.phone_e164,
            template=message.template,
            user_id=conversation.user_id,
            replica=self.stores.replica,
        )
        if blocked is not None:
            await apply_status(session=session, message_id=message.id, status="blocked", at=datetime.now(UTC))
            await session.commit()
            activity.logger.info("text %s blocked: %s", message.id, blocked)
            return SmsOutcome(SendStatus.BLOCKED, message.id, blocked)
        settings = self.stores.settings
        await attempts.begin(self.stores.postgres, key, channel="sms", digest=attempts.body_digest(body))
        await failpoints.reach(settings, "sms.before_create")
        try:
            sent = await self.telephony.send_sms(
                to=conversation.phone_e164,
                body=body,
                status_callback=sms_status_url(settings.public_base_url, message.id),
                idempotency_key=carrier_key or message.idempotency_key or f"sms-{message.id}",
            )
        except TelephonyError as exc:
            if exc.is_retryable:
                raise ApplicationError(str(exc), type="TelephonyUnavailable") from None
            status = "blocked" if exc.code == UNSUBSCRIBED else "failed"
            await apply_status(session=session, message_id=message.id, status=status, at=datetime.now(UTC))
            await session.commit()
            return SmsOutcome(_outcome_of(status), message.id, exc.message)
        await failpoints.reach(settings, "sms.before_store")
        await self._record_sent(session, message, key, sent)
        return SmsOutcome(SendStatus.SENT, message.id)

    async def _sent_before(self, key: str, phone: str) -> SmsSent | None:
        """The text an earlier try of this send handed to the carrier, if the carrier has it."""
        earlier = await attempts.find(self.stores.postgres, key)
        if earlier is None or earlier.body_digest is None:
            return None
        if earlier.sid is not None:
            return SmsSent(sid=earlier.sid, status="queued")
        try:
            return await self.telephony.find_sms(
                to=phone, since=earlier.started_at - attempts.CLOCK_SKEW, digest=earlier.body_digest
            )
        except TelephonyError as exc:
            # Not knowing whether the customer has the text is no reason to text her again: later.
            raise ApplicationError(str(exc), type="TelephonyUnavailable") from None

    async def _record_sent(self, session: AsyncSession, message: SmsMessage, key: str, sent: SmsSent) -> None:
        now = datetime.now(UTC)
        await apply_status(session=session, message_id=message.id, sid=sent.sid, status=sent.status or "queued", at=now)
        # A status callback may have moved it further already: the sid is recorded either way.
        await session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message.id, SmsMessage.twilio_sid.is_(None))
            .values(twilio_sid=sent.sid)
        )
        await session.commit()
        await attempts.settle(self.stores.postgres, key, sent.sid)

    # --- magic links -------------------------------------------------------------------------------

    @activity.defn
    async def issue_magic_link(self, input: IssueMagicLinkInput) -> MagicLinkIssued:
        """Create the link and text it, in one step: the token never leaves this activity in clear
        except in the text itself (the stored copy of the text has it redacted)."""
        key = f"{input.workflow_id}:sms"
        try:
            # One lock for the link and its text: a try still alive keeps a second one from re-issuing.
            async with attempts.exclusive(self.stores.carrier_locks, f"link:{input.workflow_id}"):
                return await self._issue_once(input, key)
        except attempts.AttemptBusy as exc:
            raise ApplicationError(str(exc), type="SendUnderWay") from None

    async def _issue_once(self, input: IssueMagicLinkInput, key: str) -> MagicLinkIssued:
        link_in = input.link
        settings = self.stores.settings
        now = datetime.now(UTC)
        ttl = timedelta(seconds=link_in.ttl_s)
        async with self.stores.sessions() as session:
            message = await session.scalar(select(SmsMessage).where(SmsMessage.idempotency_key == key))
            if message is not None and message.status == "pending":
                # An earlier try issued the link and may have texted it: if the carrier has that text,
                # the customer holds a live link, and issuing another would send her a second one.
                conversation = await session.get(SmsConversation, message.conversation_id)
                assert conversation is not None
                sms_key = attempts.sms_key(message.id)
                if (earlier := await self._sent_before(sms_key, conversation.phone_e164)) is not None:
                    await self._record_sent(session, message, sms_key, earlier)
                    await session.refresh(message)
            if message is not None and message.status != "pending":
                link = await session.scalar(select(MagicLink).where(MagicLink.workflow_id == input.workflow_id))
                assert link is not None
                return MagicLinkIssued(link.id, link.expires_at, SmsOutcome(_outcome_of(message.status), message.id))
            try:
                target = await magic_links.validate_target(
                    replica=self.stores.replica,
                    user_id=link_in.user_id,
                    purpose=link_in.purpose,
                    claim_id=link_in.claim_id,
                    requirement_id=link_in.requirement_id,
                )
                phone = await customer_mobile(replica=self.stores.replica, user_id=link_in.user_id)
            except CommsError as exc:
                # Nothing to send any more (signed meanwhile, number gone): a withdrawn link keeps the record.
                target = magic_links.LinkTarget(link_in.claim_id, link_in.requirement_id, None)
                link, _ = await magic_links.issue(
                    session=session,
                    workflow_id=input.workflow_id,
                    user_id=link_in.user_id,
                    purpose=link_in.purpose,
                    target=target,
                    agent_id=link_in.agent_id,
                    now=now,
                    ttl=ttl,
                )
                await magic_links.withdraw(session=session, link_id=link.id, now=now)
                await session.commit()
                return MagicLinkIssued(link.id, link.expires_at, SmsOutcome(SendStatus.BLOCKED, None, exc.message))
            conversation = await get_or_create_conversation(session=session, phone=phone, user_id=link_in.user_id)
            link, token = await magic_links.issue(
                session=session,
                workflow_id=input.workflow_id,
                user_id=link_in.user_id,
                purpose=link_in.purpose,
                target=target,
                agent_id=link_in.agent_id,
                now=now,
                ttl=ttl,
            )
            template = (
                TemplateName.MAGIC_LINK_SIGN
                if link_in.purpose == MagicLinkPurpose.SIGN
                else TemplateName.MAGIC_LINK_UPLOAD
            )
            validity = int((link.expires_at - link.created_at).total_seconds())
            params = {
                "url": magic_links.link_url(settings.portal_base_url, token),
                "validity": describe_validity(validity),
                "document": target.document_type or "",
            }
            body = render(template, TemplateContext.from_settings(settings), params)
            message = await prepare_outbound(
                session=session,
                conversation_id=conversation.id,
                body=magic_links.redact(body, token),
                template=str(template),
                idempotency_key=key,
                agent_id=link_in.agent_id,
                at=now,
            )
            await session.commit()
            # The carrier key follows the token: a retry that had to issue a new token sends the new
            # one rather than being deduplicated into the text that never went out.
            outcome = await self._deliver(
                session, message, body=body, carrier_key=f"{key}:{link.token_hash[:12]}", locked=True
            )
            if outcome.status != SendStatus.SENT:
                await magic_links.withdraw(session=session, link_id=link.id, now=datetime.now(UTC))
                await session.commit()
            return MagicLinkIssued(link.id, link.expires_at, outcome)

    @activity.defn
    async def abandon_magic_link(self, workflow_id: str) -> MagicLinkResult | None:
        """Issuing failed for good: the link (if any) is withdrawn and its result recorded as failed."""
        async with self.stores.sessions() as session:
            link = await session.scalar(select(MagicLink).where(MagicLink.workflow_id == workflow_id))
            message = await session.scalar(select(SmsMessage).where(SmsMessage.idempotency_key == f"{workflow_id}:sms"))
            if message is not None:
                await apply_status(session=session, message_id=message.id, status="failed", at=datetime.now(UTC))
            if link is None:
                await session.commit()
                return None
            await magic_links.withdraw(session=session, link_id=link.id, now=datetime.now(UTC))
            await session.commit()
        return await self.record_magic_link_result(RecordLinkResultInput(link.id, unsent_status=SendStatus.FAILED))

    @activity.defn
    async def record_magic_link_result(self, input: RecordLinkResultInput) -> MagicLinkResult:
        """The link's result, once, in its row (``note``) and in the contact history (``contact_attempts``,
        channel ``sms``, result ``magic_link_<result>``), so agents see it with the calls."""
        async with self.stores.sessions() as session:
            link = await session.get(MagicLink, input.link_id)
            if link is None:
                raise ApplicationError(f"no magic link {input.link_id}", type="MagicLinkGone", non_retryable=True)
            if link.note is not None:
                return MagicLinkResult(link.id, link.note)
            if link.used_at is not None:
                result = "used"
            elif input.unsent_status is not None:
                result = str(input.unsent_status)
            else:
                result = "expired"
            if await magic_links.settle(session=session, link_id=link.id, result=result) is not None:
                conversation = await conversation_for_user(session=session, user_id=link.user_id)
                session.add(
                    ContactAttempt(
                        user_id=link.user_id,
                        phone_e164=conversation.phone_e164 if conversation else "",
                        channel="sms",
                        agent_id=link.created_by_agent_id,
                        result=f"magic_link_{result}",
                        abandoned=False,
                        attempted_at=datetime.now(UTC),
                    )
                )
            await session.commit()
        await forget(self.stores.redis, self.stores.settings.redis_prefix, [link.user_id])
        return MagicLinkResult(link.id, result)


__all__ = ["FINAL_STATUSES", "SmsActivities", "sms_status_url"]
