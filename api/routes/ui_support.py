"""Small reads the web UI needs and no other route gives: its configuration, the break reasons, the
agent's live state in one conditional request, the customer they hold (after a page reload), and
the bookable callback slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import PROTECTED_RESPONSES, audit_context, require, route_table
from api.conditional import NOT_MODIFIED, conditional_json
from api.deps import RedisDep, SessionDep, SettingsDep, StoresDep, temporal_or_none
from api.errors import NotFound, Unavailable, Unprocessable
from api.routes.calls import CallRead, open_call_of
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.agents.presence import PresenceState, agent_targets, get_presence
from dialler.agents.schemas import PresenceRead
from dialler.agents.service import utcnow
from dialler.audit.service import record_ctx
from dialler.calls import inbound as inbound_calls
from dialler.calls.dispositions import (
    AGENT_DISPOSITIONS,
    EFFECTS,
    NEEDS_ANSWERED_CALL,
    NEEDS_DIALLED_CALL,
    InvalidOutcome,
    check_outcome,
)
from dialler.compliance import gates
from dialler.config import Settings
from dialler.customers.context import CustomerContext, get_context
from dialler.integrations import twilio_voice
from dialler.integrations.twilio_voice import RECORDING_NOTICE
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores

router = APIRouter(tags=["ui"], responses=PROTECTED_RESPONSES)

SLOT_HORIZON = timedelta(days=60)
SLOT_STEP_MINUTES = 15

# Routes of other modules the UI uses when they exist (it hides the feature otherwise, so that no
# screen probes a missing route and logs a 404).
OPTIONAL_ROUTES = {
    "callbacks_mine": ("GET", "/api/v1/callbacks/mine"),
}


# --- configuration ---------------------------------------------------------------------------------


class DispositionRead(BaseModel):
    code: str
    contact: bool = Field(description="The customer was reached (counts towards the contact rate).")
    needs_answered_call: bool
    needs_dialled_call: bool = Field(default=False, description="Offered only after a call was dialled.")
    needs_callback_time: bool
    needs_note: bool


class UiConfigRead(BaseModel):
    telephony_mode: str
    temporal_ui_url: str
    temporal_namespace: str
    calling_timezone: str
    clock_offset_s: int = Field(description="Demo/test stacks only: shift of the compliance clock (0 in production).")
    wrap_up_timeout_s: int
    break_reasons: list[str]
    dispositions: list[DispositionRead]
    features: dict[str, bool]
    sms_routes: list[str] = Field(description="`METHOD path` of the SMS routes this server has.")
    phone_emulator_url: str | None = Field(
        default=None,
        description="Development against the local Twilio emulator only: its base URL, where the agent's "
        "browser phone registers instead of Twilio (the same Device/Call flow). Null in production.",
    )
    caller_id: str = Field(
        default="",
        description="The number our calls present: a call ringing the agent's phone from it was placed by the dialler",
    )
    device_ready_every_s: float = Field(
        default=5.0, description="How often the agent's page reports its phone ready (a third of the heartbeat's life)"
    )
    recording_notice: str = Field(
        default=RECORDING_NOTICE,
        description="The agent's first line on every connected call (nothing automated plays before the agent).",
    )


def _rejects(code: str, *, callback: bool, notes: str | None, answered: bool) -> bool:
    try:
        check_outcome(code, callback_at_given=callback, notes=notes, answered=answered)
    except InvalidOutcome:
        return True
    return False


def disposition_rules() -> list[DispositionRead]:
    """What each agent disposition needs, read from the one table and its validator (not restated)."""
    found = []
    for code in AGENT_DISPOSITIONS:
        books = EFFECTS[code].books_callback
        found.append(
            DispositionRead(
                code=code.value,
                contact=EFFECTS[code].contact,
                needs_answered_call=code in NEEDS_ANSWERED_CALL,
                needs_dialled_call=code in NEEDS_DIALLED_CALL,
                needs_callback_time=books,
                needs_note=_rejects(code, callback=books, notes=None, answered=True),
            )
        )
    return found


@router.get("/ui/config", response_model=UiConfigRead)
async def ui_config(
    request: Request,
    settings: SettingsDep,
    _: Annotated[Agent, Depends(require(Permission.PROFILE_READ))],
) -> UiConfigRead:
    """What the screens need to know about this server: telephony mode, Temporal UI address, the
    calling timezone and clock, break reasons, the dispositions and the fields each one requires,
    and which optional features are installed."""
    served = {f"{m} {r.path}" for r in route_table(request.app) for m in r.methods}
    return UiConfigRead(
        telephony_mode=settings.telephony_mode.value,
        temporal_ui_url=settings.temporal_ui_url,
        temporal_namespace=settings.temporal_namespace,
        calling_timezone=settings.calling_timezone,
        clock_offset_s=settings.clock_offset_s,
        wrap_up_timeout_s=settings.wrap_up_timeout_s,
        break_reasons=list(settings.break_reasons),
        dispositions=disposition_rules(),
        features={name: f"{m} {p}" in served for name, (m, p) in OPTIONAL_ROUTES.items()},
        sms_routes=sorted(r for r in served if " /api/v1/sms" in r),
        phone_emulator_url=twilio_voice.browser_phone_emulator_url(settings),
        caller_id=settings.caller_id,
        device_ready_every_s=round(settings.device_ready_ttl_s / 3, 1),
    )


class PresenceOptionsRead(BaseModel):
    state: PresenceState
    can_set: list[PresenceState]
    break_reasons: list[str]


@router.get("/agents/me/presence/options", response_model=PresenceOptionsRead)
async def presence_options(
    agent: Annotated[Agent, Depends(require(Permission.PROFILE_READ))],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> PresenceOptionsRead:
    """The states the caller may choose from where they are, and the reasons a break may take."""
    presence = await get_presence(session=session, redis=redis, settings=settings, agent_id=agent.id)
    return PresenceOptionsRead(
        state=presence.state, can_set=agent_targets(presence.state), break_reasons=list(settings.break_reasons)
    )


# --- the agent's live state ------------------------------------------------------------------------


class SmsStateRead(BaseModel):
    """Enough of the held customer's SMS thread to know when to reload it (not the messages)."""

    conversation_id: int
    unread_count: int
    messages: int
    changed_at: datetime | None


class InboundCallRead(BaseModel):
    """A customer ringing us back, routed to this agent: the screen-pop before they answer."""

    call_sid: str
    user_id: int | None = Field(description="None: a number we do not know.")
    received_at: datetime
    customer: CustomerContext | None


class LiveRead(BaseModel):
    presence: PresenceRead
    call: CallRead | None = Field(description="The agent's open call session, if any.")
    call_unavailable: bool = Field(description="A session exists but its state could not be read just now.")
    sms: SmsStateRead | None = Field(description="The SMS thread of the customer the agent holds, if any.")
    inbound: InboundCallRead | None = Field(
        default=None, description="A returned call routed to the agent just now, with the caller's context."
    )
    at: datetime


_SMS_STATE = text(
    "SELECT c.id, c.unread_count, count(m.id) AS messages,"
    " max(greatest(m.created_at, coalesce(m.status_updated_at, m.created_at))) AS changed_at"
    " FROM sms_conversations c LEFT JOIN sms_messages m ON m.conversation_id = c.id"
    " WHERE c.user_id = :user_id GROUP BY c.id"
)


async def _sms_state(session: AsyncSession, user_id: int) -> SmsStateRead | None:
    row = (await session.execute(_SMS_STATE, {"user_id": user_id})).one_or_none()
    if row is None:
        return None
    return SmsStateRead(
        conversation_id=row.id, unread_count=row.unread_count, messages=row.messages, changed_at=row.changed_at
    )


@router.get("/agents/me/live", response_model=LiveRead, responses=NOT_MODIFIED)
async def my_live_state(
    request: Request,
    agent: Annotated[Agent, Depends(require(Permission.CALLS_WORK))],
    session: SessionDep,
    stores: StoresDep,
) -> Response:
    """The caller's presence, open call session and the held customer's SMS thread state in one
    read, for the workspace to poll (about once a second) with `If-None-Match`: `304` while nothing
    changed."""
    presence = await get_presence(session=session, redis=stores.redis, settings=stores.settings, agent_id=agent.id)
    try:
        call, unavailable = await open_call_of(stores, await temporal_or_none(request), agent.id), False
    except Unavailable:
        call, unavailable = None, True
    if call is None and not unavailable:
        call = await _returned_call_of(stores, agent.id)
    sms = await _sms_state(session, call.user_id) if call is not None else None
    now = utcnow()
    inbound = await _inbound_for(stores, agent.id, now)
    live = LiveRead(
        presence=PresenceRead(
            agent_id=presence.agent_id,
            state=presence.state,
            reason=presence.reason,
            since=presence.since,
            seconds_in_state=None,  # the screen counts from `since`; a ticking number would defeat the ETag
            user_id=presence.user_id,
            can_set=agent_targets(presence.state),
        ),
        call=call,
        call_unavailable=unavailable,
        sms=sms,
        inbound=inbound,
        at=now,
    )
    return conditional_json(request, live, ignore=("at",))


async def _returned_call_of(stores: Stores, agent_id: int) -> CallRead | None:
    """The returned call the agent answered, as a call like any other (hang up, outcome): read from
    its session's row, which its InboundCallWorkflow keeps (no lease names it)."""
    row = await inbound_calls.open_returned_session_of(stores.postgres, agent_id)
    if row is None or row.agent_id is None:
        return None
    deadline = None
    if row.status == "wrap_up" and row.ended_at is not None:
        deadline = row.ended_at + timedelta(seconds=stores.settings.wrap_up_timeout_s)
    return CallRead(
        session_id=str(row.id),
        workflow_id=row.workflow_id,
        user_id=row.user_id,
        agent_id=row.agent_id,
        queue=row.queue,
        state=row.status,
        end_reason=row.end_reason,
        disposition=None,
        answered=True,
        started_at=row.started_at,
        wrap_up_deadline=deadline,
        dispositions=list(AGENT_DISPOSITIONS),
    )


async def _inbound_for(stores: Stores, agent_id: int, now: datetime) -> InboundCallRead | None:
    ringing = await inbound_calls.ringing_for(stores.postgres, agent_id, now)
    if ringing is None:
        return None
    customer = None
    if ringing.user_id is not None:
        customer = await get_context(
            redis=stores.redis,
            prefix=stores.settings.redis_prefix,
            replica=stores.replica,
            postgres=stores.postgres,
            user_id=ringing.user_id,
        )
    return InboundCallRead(
        call_sid=ringing.call_sid, user_id=ringing.user_id, received_at=ringing.received_at, customer=customer
    )


@router.get("/agents/me/customer", response_model=CustomerContext, responses={404: {"description": "No customer"}})
async def my_customer(
    request: Request,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_OWN))],
    session: SessionDep,
    stores: StoresDep,
) -> CustomerContext:
    """The customer leased to the caller (the same context next-call returned), e.g. after a page
    reload. 404 when the caller holds nobody. Audited like next-call."""
    lease = await queue_engine(stores).lease_of_agent(agent.id)
    if lease is None:
        raise NotFound("You hold no customer right now.")
    context = await get_context(
        redis=stores.redis,
        prefix=stores.settings.redis_prefix,
        replica=stores.replica,
        postgres=stores.postgres,
        user_id=lease.user_id,
    )
    if context is None:
        raise NotFound("That customer is no longer on record.")
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="customer.context_read",
        subject_type="customer",
        subject_id=lease.user_id,
        details={"via": "reload"},
    )
    await session.commit()
    return context


# --- callback slots --------------------------------------------------------------------------------


class SlotRead(BaseModel):
    at: datetime = Field(description="The instant to book (UTC): send it as `callback_at`.")
    local: datetime = Field(description="The same slot as the customer's wall clock (UK time).")
    label: str


class SlotPage(BaseModel):
    timezone: str
    step_minutes: int
    slots: list[SlotRead]
    next_from: datetime | None = Field(description="`from` for the next page of slots.")


def bookable_slots(settings: Settings, start: datetime, count: int) -> list[SlotRead]:
    """``count`` slots from ``start`` (real UTC) inside calling hours of the customer's local time.

    Calling hours are judged on the compliance clock (``dialler.clock``), which a demo or test
    stack may shift; the instants returned are real time (slot - offset), as timers run on it."""
    rules = gates.CallingRules.from_settings(settings)
    shift = clock.offset(settings)
    tz = ZoneInfo(settings.calling_timezone)
    found = []
    for slot in gates.next_allowed_slots(start + shift, rules, count, SLOT_STEP_MINUTES):
        local = slot.astimezone(tz)
        found.append(SlotRead(at=slot - shift, local=local, label=local.strftime("%a %d %b %H:%M")))
    return found


@router.get("/callbacks/slots", response_model=SlotPage)
async def callback_slots(
    settings: SettingsDep,
    _: Annotated[Agent, Depends(require(Permission.CALLBACKS_WRITE))],
    from_: Annotated[
        datetime | None, Query(alias="from", description="Earliest time wanted (UTC if no offset); default now.")
    ] = None,
    count: Annotated[int, Query(ge=1, le=500)] = 96,
) -> SlotPage:
    """Bookable callback times, on a 15-minute grid, only inside calling hours in the customer's
    local time (UK: weekdays and Saturdays as configured, never Sundays or bank holidays), starting
    at least `callback_slot_lead_s` (5 minutes by default) from now."""
    now = clock.instant()
    earliest = now + timedelta(seconds=settings.callback_slot_lead_s)  # still ahead when the form is sent
    if from_ is not None:
        start = from_ if from_.tzinfo is not None else from_.replace(tzinfo=UTC)
        if start > now + SLOT_HORIZON:
            raise Unprocessable(f"`from` must be within {SLOT_HORIZON.days} days from now.")
        earliest = max(earliest, start)
    slots = bookable_slots(settings, earliest, count)
    return SlotPage(
        timezone=settings.calling_timezone,
        step_minutes=SLOT_STEP_MINUTES,
        slots=slots,
        next_from=slots[-1].at + timedelta(minutes=SLOT_STEP_MINUTES) if slots else None,
    )
