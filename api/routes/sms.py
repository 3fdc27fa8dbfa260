"""SMS: conversations with customers, sending texts and magic links, and Twilio's SMS webhooks.

Agents read the conversations of the customers they work on (leased to them now, or called by them:
``dialler.customers.access.may_work_with``); supervisors read every conversation. A refusal is a 403
with the code ``not_your_customer`` and is audited. Sending is accepted work: the API checks the text
(template or free text: character set, segments, length) and the recipient, writes the message, and
starts a workflow that sends it (202 with the workflow id); it never talks to the carrier itself.

Webhooks (``/webhooks/twilio/sms-status``, ``/webhooks/twilio/sms-inbound``) authenticate with
``X-Twilio-Signature``: a forged request is a 403 and changes nothing. An inbound STOP takes effect
within the request: the opt-out is committed (every "may we contact" check reads it) before Twilio
gets its answer; ``InboundSmsWorkflow`` then takes the customer out of every queue, cancels their
callback and sends one confirmation, retried by Temporal until done.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError
from twilio.twiml.messaging_response import MessagingResponse

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep, TemporalDep, temporal_or_none
from api.errors import Forbidden, Unavailable
from api.routes.voice import TWIML, TwilioForm
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.audit.service import record_ctx
from dialler.comms import errors as comms_errors
from dialler.comms import inbound, magic_links
from dialler.comms import service as sms
from dialler.comms.keywords import InboundAction
from dialler.comms.messages import (
    MagicLinkInput,
    MagicLinkPurpose,
    SendSmsInput,
    magic_link_workflow_id,
    sms_workflow_id,
)
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.comms.templates import (
    AGENT_TEMPLATES,
    TemplateContext,
    TemplateName,
    check_body,
    render,
    smart_encode,
)
from dialler.customers.access import may_work_with
from dialler.integrations.masking import mask_phone
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from workflows.inbound_sms_client import start_inbound_sms
from workflows.magic_link_client import start_magic_link
from workflows.sms_client import start_send_sms

log = logging.getLogger("dialler.api.sms")
router = APIRouter(prefix="/sms", tags=["sms"], responses=PROTECTED_RESPONSES)
webhooks = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])
MAX_ID = 2**63 - 1
EMPTY_TWIML = str(MessagingResponse())

# --- errors ---------------------------------------------------------------------------------------


class NotYourCustomer(Forbidden):
    """Object-level refusal: the role may do this, but not for this customer (audited)."""

    code = "not_your_customer"


# --- schemas ---------------------------------------------------------------------------------------


class ConversationRead(BaseModel):
    id: int
    user_id: int | None
    phone_masked: str
    unread_count: int
    last_message_at: datetime | None
    opted_out: bool
    last_direction: str | None = None
    last_preview: str | None = None


class ConversationPage(BaseModel):
    items: list[ConversationRead]
    limit: int
    offset: int


class MessageRead(BaseModel):
    id: int
    direction: str
    body: str
    template: str | None
    status: str
    agent_id: int | None
    created_at: datetime
    status_updated_at: datetime | None


class ThreadRead(BaseModel):
    """A conversation and its newest messages, oldest first (``conversation`` null: never texted)."""

    conversation: ConversationRead | None
    items: list[MessageRead]


class SmsCreate(BaseModel):
    """Exactly one of ``template`` (see `GET /sms/templates`) and ``text`` (free text)."""

    template: TemplateName | None = None
    text: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_of(self) -> SmsCreate:
        if (self.template is None) == (self.text is None):
            raise ValueError("give either a template or a text, not both")
        return self


class SmsAccepted(BaseModel):
    workflow_id: str
    message_id: int
    status: str
    encoding: str
    characters: int
    segments: int


class MagicLinkCreate(BaseModel):
    purpose: MagicLinkPurpose
    claim_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    requirement_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Required for upload links")
    expires_in_hours: int = Field(default=72, ge=1, le=14 * 24)


class MagicLinkAccepted(BaseModel):
    workflow_id: str
    purpose: str
    claim_id: int | None
    requirement_id: int | None
    expires_in_hours: int


class TemplateRead(BaseModel):
    name: str
    text: str
    encoding: str
    segments: int


# --- helpers ---------------------------------------------------------------------------------------


def _conversation_read(summary: sms.ConversationSummary) -> ConversationRead:
    preview = None if summary.last_body is None else summary.last_body[:80]
    return ConversationRead(
        id=summary.id,
        user_id=summary.user_id,
        phone_masked=mask_phone(summary.phone_e164),
        unread_count=summary.unread_count,
        last_message_at=summary.last_message_at,
        opted_out=summary.opted_out,
        last_direction=summary.last_direction,
        last_preview=preview,
    )


def _message_read(message: SmsMessage) -> MessageRead:
    return MessageRead.model_validate(message, from_attributes=True)


async def _ensure_may_work_with(
    request: Request, session: AsyncSession, stores: Stores, agent: Agent, user_id: int | None, subject: dict[str, Any]
) -> None:
    """403 ``not_your_customer`` (audited) unless the agent works on this customer or reads all SMS."""
    if Permission.SMS_READ_ALL in permissions_of(agent.role):
        return
    if user_id is not None and await may_work_with(
        session=session, engine=queue_engine(stores), agent=agent, user_id=user_id
    ):
        return
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="sms.access_denied",
        subject_type="customer" if user_id is not None else "sms_conversation",
        subject_id=user_id if user_id is not None else subject.get("conversation_id"),
        details={"method": request.method, "path": request.url.path, **subject},
    )
    await session.commit()
    raise NotYourCustomer("This customer is not one you work on.")


async def _thread(
    session: AsyncSession, conversation: SmsConversation, limit: int, before_id: int | None
) -> ThreadRead:
    messages = await sms.list_messages(
        session=session, conversation_id=conversation.id, limit=limit, before_id=before_id
    )
    unread = conversation.unread_count
    if before_id is None:  # the newest page is what the agent has now seen
        await sms.mark_read(session=session, conversation_id=conversation.id)
        await session.commit()
        unread = 0
    opted = await sms.is_opted_out(session=session, phone=conversation.phone_e164)
    last = messages[-1] if messages else None
    summary = sms.ConversationSummary(
        id=conversation.id,
        user_id=conversation.user_id,
        phone_e164=conversation.phone_e164,
        unread_count=unread,
        last_message_at=conversation.last_message_at,
        opted_out=opted,
        last_direction=last.direction if last else None,
        last_body=last.body if last else None,
    )
    return ThreadRead(conversation=_conversation_read(summary), items=[_message_read(m) for m in messages])


# --- reading ---------------------------------------------------------------------------------------


@router.get("/templates", response_model=list[TemplateRead])
async def templates(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.SMS_SEND))]
) -> list[TemplateRead]:
    """The templates an agent may send, as the customer will read them."""
    context = TemplateContext.from_settings(stores.settings)
    out = []
    for name in sorted(AGENT_TEMPLATES):
        text = render(name, context, {})
        length = check_body(text)
        out.append(TemplateRead(name=name.value, text=text, encoding=str(length.encoding), segments=length.segments))
    return out


@router.get("/conversations", response_model=ConversationPage)
async def my_conversations(
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_OWN))],
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ConversationPage:
    """Conversations with the customers this agent works on (leased to them now, or called by them),
    most recent first."""
    lease = await queue_engine(stores).lease_of_agent(agent.id)
    found = await sms.list_conversations(
        session=session,
        agent_id=agent.id,
        leased_user_id=lease.user_id if lease else None,
        unread_only=unread_only,
        limit=limit,
        offset=offset,
    )
    return ConversationPage(items=[_conversation_read(c) for c in found], limit=limit, offset=offset)


@router.get("/conversations/all", response_model=ConversationPage)
async def all_conversations(
    session: SessionDep,
    agent: Annotated[Agent, Depends(require(Permission.SMS_READ_ALL))],
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ConversationPage:
    """Every conversation (supervisors), most recent first; ``unread_only`` for the replies waiting."""
    found = await sms.list_conversations(
        session=session, agent_id=None, unread_only=unread_only, limit=limit, offset=offset
    )
    return ConversationPage(items=[_conversation_read(c) for c in found], limit=limit, offset=offset)


@router.get("/conversations/{conversation_id}/messages", response_model=ThreadRead)
async def conversation_messages(
    conversation_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_OWN))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ThreadRead:
    """A conversation's messages, oldest first (page back with ``before_id``). Reading the newest page
    marks the conversation read."""
    conversation = await session.get(SmsConversation, conversation_id)
    if conversation is None:
        raise comms_errors.ConversationNotFound()
    await _ensure_may_work_with(
        request, session, stores, agent, conversation.user_id, {"conversation_id": conversation_id}
    )
    return await _thread(session, conversation, limit, before_id)


@router.get("/customers/{user_id}/messages", response_model=ThreadRead)
async def customer_messages(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_OWN))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ThreadRead:
    """The conversation with a customer (``conversation`` null if they were never texted)."""
    await _ensure_may_work_with(request, session, stores, agent, user_id, {})
    conversation = await sms.conversation_for_user(session=session, user_id=user_id)
    if conversation is None:
        return ThreadRead(conversation=None, items=[])
    return await _thread(session, conversation, limit, before_id)


# --- sending ---------------------------------------------------------------------------------------


@router.post(
    "/customers/{user_id}/messages",
    response_model=SmsAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "The customer opted out"}, 422: {"description": "Text or recipient invalid"}},
)
async def send_sms(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: SmsCreate,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.SMS_SEND))],
) -> SmsAccepted:
    """Text a customer, from a template or free text (GSM-7 or UCS-2, at most 6 segments; typographic
    quotes and dashes are sent as their plain equivalents). Accepted: a workflow sends it, and its
    delivery status appears on the message."""
    await _ensure_may_work_with(request, session, stores, agent, user_id, {})
    if body.template is not None:
        if body.template not in AGENT_TEMPLATES:
            raise comms_errors.TemplateError(f"The {body.template.value} text is sent by the system only.")
        text = render(body.template, TemplateContext.from_settings(stores.settings), {})
    else:
        text = smart_encode(body.text or "")
    length = check_body(text)
    phone = await sms.customer_mobile(replica=stores.replica, user_id=user_id)
    template = body.template.value if body.template else None
    blocked = await sms.send_blocked_reason(
        session=session, phone=phone, template=template, user_id=user_id, replica=stores.replica
    )
    if blocked is not None:
        raise comms_errors.OptedOut(blocked)
    workflow_id = sms_workflow_id("agent", uuid.uuid4().hex)
    conversation = await sms.get_or_create_conversation(session=session, phone=phone, user_id=user_id)
    message = await sms.prepare_outbound(
        session=session,
        conversation_id=conversation.id,
        body=text,
        template=template,
        idempotency_key=f"{workflow_id}:sms",
        agent_id=agent.id,
        at=datetime.now(UTC),
    )
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="sms.send",
        subject_type="customer",
        subject_id=user_id,
        details={
            "workflow_id": workflow_id,
            "message_id": message.id,
            "template": template,
            "segments": length.segments,
        },
    )
    await session.commit()
    try:
        await start_send_sms(
            temporal,
            task_queue=stores.settings.temporal_task_queue,
            workflow_id=workflow_id,
            input=SendSmsInput(user_id=user_id, template=template, message_id=message.id, agent_id=agent.id),
        )
    except RPCError:
        await sms.apply_status(session=session, message_id=message.id, status="failed", at=datetime.now(UTC))
        await session.commit()
        raise Unavailable(
            "The text could not be queued right now; it was not sent. Try again.", dependency="temporal"
        ) from None
    return SmsAccepted(
        workflow_id=workflow_id,
        message_id=message.id,
        status="accepted",
        encoding=str(length.encoding),
        characters=length.characters,
        segments=length.segments,
    )


@router.post(
    "/customers/{user_id}/magic-links",
    response_model=MagicLinkAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "The customer opted out"}, 422: {"description": "Nothing to sign or upload"}},
)
async def send_magic_link(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: MagicLinkCreate,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.SMS_SEND))],
) -> MagicLinkAccepted:
    """Text the customer a one-time link to the portal: to sign (optionally for a claim), or to upload
    the documents of a pending requirement. Accepted: a workflow sends it, waits for its use or
    expiry, and records which in the contact history."""
    await _ensure_may_work_with(request, session, stores, agent, user_id, {})
    target = await magic_links.validate_target(
        replica=stores.replica,
        user_id=user_id,
        purpose=body.purpose.value,
        claim_id=body.claim_id,
        requirement_id=body.requirement_id,
    )
    phone = await sms.customer_mobile(replica=stores.replica, user_id=user_id)
    blocked = await sms.send_blocked_reason(
        session=session, phone=phone, template=None, user_id=user_id, replica=stores.replica
    )
    if blocked is not None:
        raise comms_errors.OptedOut(blocked)
    workflow_id = magic_link_workflow_id(user_id, body.purpose.value, uuid.uuid4().hex[:12])
    await start_magic_link(
        temporal,
        task_queue=stores.settings.temporal_task_queue,
        workflow_id=workflow_id,
        input=MagicLinkInput(
            user_id=user_id,
            purpose=body.purpose.value,
            claim_id=target.claim_id,
            requirement_id=target.requirement_id,
            agent_id=agent.id,
            ttl_s=body.expires_in_hours * 3600,
        ),
    )
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="sms.magic_link",
        subject_type="customer",
        subject_id=user_id,
        details={"workflow_id": workflow_id, "purpose": body.purpose.value, "requirement_id": target.requirement_id},
    )
    await session.commit()
    return MagicLinkAccepted(
        workflow_id=workflow_id,
        purpose=body.purpose.value,
        claim_id=target.claim_id,
        requirement_id=target.requirement_id,
        expires_in_hours=body.expires_in_hours,
    )


# --- Twilio webhooks -------------------------------------------------------------------------------


@webhooks.post("/sms-status", status_code=204)
async def sms_status(form: TwilioForm, session: SessionDep, m: str | None = None) -> Response:
    """Twilio's delivery status of a text we sent: it only ever moves forward (queued → sent →
    delivered / undelivered / failed); repeats and late arrivals of an earlier status change nothing."""
    state = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip() or None
    message_id = int(m) if m is not None and m.isdigit() and 0 < int(m) <= MAX_ID else None
    if state and (sid or message_id):
        changed = await sms.apply_status(
            session=session, status=state, at=datetime.now(UTC), sid=sid, message_id=message_id
        )
        await session.commit()
        if changed and form.get("ErrorCode"):
            log.info("text %s %s with carrier error %s", sid, state, form.get("ErrorCode"))
    return Response(status_code=204)


SMS_TWIML_RESPONSE = {200: {"description": "Empty TwiML", "content": {TWIML: {"schema": {"type": "string"}}}}}


@webhooks.post("/sms-inbound", response_class=Response, responses=SMS_TWIML_RESPONSE)
async def sms_inbound(request: Request, form: TwilioForm, session: SessionDep, stores: StoresDep) -> Response:
    """A text from a customer: threaded into their conversation; STOP and the like opt them out at once
    (no call, no text, out of every queue, callback cancelled, one confirmation); START opts back in;
    CANCEL in reply to a callback text cancels the callback; anything else waits for an agent."""
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    phone = sms.inbound_e164(form.get("From", ""))
    if not sid or phone is None:
        log.warning("inbound text without a sid or a usable sender (%s): ignored", mask_phone(form.get("From")))
        return Response(EMPTY_TWIML, media_type=TWIML)
    result = await sms.receive_inbound(
        session=session, replica=stores.replica, phone=phone, body=form.get("Body", ""), sid=sid, at=datetime.now(UTC)
    )
    await session.commit()
    await _act_on(sid, result, stores, await temporal_or_none(request))
    return Response(EMPTY_TWIML, media_type=TWIML)


async def _act_on(sid: str, result: sms.InboundResult, stores: Stores, temporal: Client | None) -> None:
    """Hand what the text asks of the queues, callbacks and the customer to ``InboundSmsWorkflow``
    (retried by Temporal until done). The opt-out is already committed, and every "may we contact"
    check reads it: a STOP is honoured from that commit, whatever Temporal's state. If Temporal cannot
    take the workflow, the webhook fails and Twilio's retry (same MessageSid) starts it then."""
    users = list(result.user_ids)
    if result.action is InboundAction.OPT_OUT:
        log.info("conversation %s opted out (users %s)", result.conversation_id, users)
        action = inbound.OPT_OUT
    elif result.action is InboundAction.OPT_IN and result.opted_in:
        action = inbound.OPT_IN
    elif result.action is InboundAction.CANCEL_CALLBACK:
        action = inbound.CANCEL_CALLBACK  # a retried text is started once: the workflow id is its sid
    else:
        return
    if temporal is None:
        raise Unavailable("The workflow engine (Temporal) is not reachable; try again shortly.")
    started = await start_inbound_sms(
        temporal,
        task_queue=stores.settings.temporal_task_queue,
        message_sid=sid,
        input=inbound.InboundSmsInput(
            action=action,
            conversation_id=result.conversation_id,
            message_id=result.message_id,
            user_ids=users,
            opt_out_episode=result.opt_out_episode,
        ),
    )
    if not started:
        log.info("inbound text of conversation %s already handed on", result.conversation_id)
