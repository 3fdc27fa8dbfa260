"""Twilio voice: the browser's access token, TwiML, and status callbacks.

Webhooks are not authenticated by token but by ``X-Twilio-Signature`` over our public URL and the
form: a forged or replayed-with-changes request is a 403 and changes nothing. A repeated callback
(Twilio retries) is acknowledged without signalling twice; the workflow also ignores repeats and
out-of-order statuses, so state changes once and in order."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.auth import PROTECTED_RESPONSES, require
from api.deps import SettingsDep, StoresDep, TelephonyDep, TemporalDep, temporal_or_none
from api.errors import Forbidden
from api.middleware import public_origin
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.calls import answered as answered_calls
from dialler.calls import inbound as inbound_calls
from dialler.calls.inbound import device_key
from dialler.calls.messages import AbandonedEvent, AgentClaimed, CallStatusEvent
from dialler.calls.returned import call_sid_of, inbound_call_workflow_id
from dialler.config import Settings
from dialler.integrations import twilio_voice
from dialler.integrations.twilio import TelephonyError, TwilioTelephony
from dialler.queues.runtime import queue_engine
from dialler.recordings import service as recordings
from dialler.runtime import Stores
from workflows import call_session_client, inbound_call_client

log = logging.getLogger("dialler.api.voice")
router = APIRouter(prefix="/voice", tags=["voice"], responses=PROTECTED_RESPONSES)
webhooks = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])
TWIML = "application/xml"
DEDUP_TTL_S = 24 * 3600
# Of the 2 s from the answer to a person on the line, what is kept for the bridge's action request and
# the start of the information message after the agent's phone has rung out.
MESSAGE_START_ALLOWANCE_S = 0.5
# Less than this left of the budget when our answer webhook is ready (a slow moment): the agent's phone
# is not rung, the customer hears the information message at once.
MIN_RING_S = 0.5
SIGNAL_TIMEOUT_S = 5.0
# Who decided an answered call that rang an agent: the bridge's action or the 2-second guard, once.
BRIDGE_DECIDED_TTL_S = 3600
# How long the inbound webhook waits to start a returned call's workflow before answering without it.
START_TIMEOUT_S = 2.0


class VoiceTokenRead(BaseModel):
    token: str
    identity: str
    ttl_s: int


@router.get("/token", response_model=VoiceTokenRead)
async def voice_token(
    settings: SettingsDep, agent: Annotated[Agent, Depends(require(Permission.VOICE_TOKEN))]
) -> VoiceTokenRead:
    """A Twilio Access Token with a VoiceGrant for this agent's browser (identity = the agent)."""
    identity = twilio_voice.agent_identity(agent.id)
    token = twilio_voice.voice_access_token(settings, identity, settings.voice_token_ttl_s)
    return VoiceTokenRead(token=token, identity=identity, ttl_s=settings.voice_token_ttl_s)


@router.post("/device-ready", status_code=204)
async def device_ready(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.VOICE_TOKEN))]
) -> Response:
    """The agent's browser phone is registered and can take a bridged call: a heartbeat the page
    sends while it is, lasting ``device_ready_ttl_s`` (15 s by default). Only an agent whose
    heartbeat is fresh is dialled for by a queue's pacer, so a closed tab or a dropped phone stops
    being dialled for within seconds."""
    await stores.redis.set(device_key(stores.settings, agent.id), "1", ex=stores.settings.device_ready_ttl_s)
    return Response(status_code=204)


@router.delete("/device-ready", status_code=204)
async def device_gone(stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.VOICE_TOKEN))]) -> Response:
    """The agent's browser phone has gone (its page closed, or it unregistered): no progressive call
    is bridged to it from now on, rather than until its last heartbeat runs out."""
    await stores.redis.delete(device_key(stores.settings, agent.id))
    return Response(status_code=204)


async def twilio_form(request: Request) -> dict[str, str]:
    """The webhook's form, once its signature over our public URL is verified (403 otherwise)."""
    settings: Settings = request.app.state.settings
    body = (await request.body()).decode()
    params = parse_qsl(body, keep_blank_values=True)
    # Behind a trusted proxy, the URL Twilio called (api/middleware.py); otherwise the configured one.
    origin = public_origin(request.state) or settings.public_base_url
    url = origin.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not twilio_voice.validate_signature(settings, url, params, request.headers.get("X-Twilio-Signature")):
        log.warning("rejected a Twilio webhook with a bad or missing signature: %s", request.url.path)
        raise Forbidden("Invalid Twilio signature.")
    return dict(params)


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


def _session(workflow_id: str) -> str:
    if not workflow_id.startswith("call-"):
        raise Forbidden("Unknown call session.")
    return workflow_id


@webhooks.post("/voice-status", status_code=204)
async def voice_status(
    wf: str, form: TwilioForm, stores: StoresDep, temporal: TemporalDep, telephony: TelephonyDep
) -> Response:
    """Twilio's call status callback: becomes a signal to the call's session."""
    call_sid, call_status = form.get("CallSid", ""), form.get("CallStatus")
    if not call_status:  # the asynchronous answering-machine verdict
        await _machine_verdict(wf, call_sid, form.get("AnsweredBy"), stores, telephony)
        return Response(status_code=204)
    seen = f"{stores.settings.redis_prefix}:twilio:seen:{call_sid}:{call_status}:{form.get('SequenceNumber', '')}"
    if await stores.redis.exists(seen):
        return Response(status_code=204)  # a retry of a callback already delivered
    event = CallStatusEvent(
        call_sid=call_sid,
        status=call_status,
        sequence=int(form.get("SequenceNumber") or 0),
        duration_s=int(form["CallDuration"]) if form.get("CallDuration", "").isdigit() else None,
        answered_by=form.get("AnsweredBy"),
    )
    try:
        await call_session_client.call_status(temporal, _session(wf), event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the session has closed: nothing left to tell
            return Response(status_code=204)
        raise  # not seen: Twilio's retry delivers it
    # Seen only once the signal has landed (a concurrent retry may signal twice: the session ignores
    # a status it already has).
    await stores.redis.set(seen, "1", ex=DEDUP_TTL_S)
    return Response(status_code=204)


async def _machine_verdict(
    wf: str, call_sid: str, answered_by: str | None, stores: Stores, telephony: TwilioTelephony
) -> None:
    """AMD (when the firm turns it on) found a machine: the attempt is ``voicemail`` and the call is
    hung up, or leaves the firm's short message first. A person needs nothing: the agent is already
    bridged within the 2 s (detection runs asynchronously, never in front of a person)."""
    settings = stores.settings
    if not settings.answering_machine_detection or not answered_calls.is_machine(answered_by):
        return
    call = await answered_calls.find_session(
        stores.postgres, workflow_id=_session(wf), session_id=None, call_sid=call_sid
    )
    if call is None or call.closed:
        return
    await answered_calls.record_voicemail(stores.postgres, session=call)
    if not settings.amd_machine_message:
        await telephony.hangup(call_sid)  # a call that has already ended is not an error
        return
    try:
        await telephony.replace_twiml(call_sid, twilio_voice.machine_message(settings.amd_machine_message))
    except TelephonyError as exc:  # already ended: nothing to leave the message on
        log.info("answering machine on a call that has ended: %s", exc)


TWIML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "TwiML for Twilio", "content": {TWIML: {"schema": {"type": "string"}}}}
}


@webhooks.post("/voice-answer", response_class=Response, responses=TWIML_RESPONSE)
async def voice_answer(
    wf: str,
    form: TwilioForm,
    stores: StoresDep,
    temporal: TemporalDep,
    telephony: TelephonyDep,
    background: BackgroundTasks,
    session: str | None = None,
) -> Response:
    """TwiML when the customer answers a call we placed (Twilio requests it at the answer: the
    2-second clock starts no later than here). Nothing is played before a person is on the line:
    the agent's browser is rung for what is left of the budget, and the bridge's ``action``
    (:func:`voice_bridged`) decides what follows — or, when the carrier rings on past the budget,
    :func:`_keep_the_budget` does. When no agent can take it — no session, no lease, a progressive
    agent whose phone is not connected — the customer hears the information message at once and
    the call is recorded abandoned. Reads only PostgreSQL and Redis: a worker that is down changes
    nothing here."""
    answered = time.monotonic()
    settings = stores.settings
    call = await answered_calls.find_session(
        stores.postgres, workflow_id=_session(wf), session_id=session, call_sid=form.get("CallSid")
    )
    if call is None or call.closed:
        return await _abandon(stores, temporal, background, call, form, "no open session")
    if call.agent_id is None:
        # A pooled (predictive) call: a ready agent is claimed now, atomically, or nobody takes it.
        claimed = await answered_calls.claim_agent(stores, call)
        if claimed is None or claimed.agent_id is None:
            return await _abandon(stores, temporal, background, call, form, "no ready agent to claim")
        call = claimed
        background.add_task(
            _tell_claimed, temporal, call.workflow_id, AgentClaimed(claimed.agent_id, form.get("CallSid"))
        )
    lease = await queue_engine(stores).lease_of(call.user_id)
    if lease is None or lease.agent_id != call.agent_id:
        return await _abandon(stores, temporal, background, call, form, "the agent no longer holds the lease")
    if call.progressive and not await stores.redis.exists(device_key(settings, call.agent_id)):
        return await _abandon(stores, temporal, background, call, form, "the agent's phone is not connected")
    # What is left once the time to fetch the action's TwiML and start the message is set aside.
    # Twilio's <Dial timeout> is whole seconds (and Twilio pads it by 5 s): the guard below, not the
    # timeout, ends the ringing at the budget, so a webhook that was slow still rings the agent for
    # what is left rather than give up a customer an agent could still take.
    left = settings.abandon_after_answer_s - (time.monotonic() - answered) - MESSAGE_START_ALLOWANCE_S
    if left < MIN_RING_S:
        spent = time.monotonic() - answered
        return await _abandon(
            stores, temporal, background, call, form, f"no time left to ring the agent ({spent:.2f} s spent)"
        )
    hooks = f"{settings.public_base_url.rstrip('/')}/api/v1/webhooks/twilio"
    query = f"wf={wf}&session={call.session_id}"
    # No status callback for the agent's leg: the session goes by the customer's leg (a status of
    # another call is ignored there), and the bridge's action says how the agent's leg ended. Each
    # one cost a webhook, a signal and a workflow task: three per call.
    twiml = twilio_voice.bridge_to_agent(
        twilio_voice.agent_identity(call.agent_id),
        caller_id=settings.caller_id,
        action_url=f"{hooks}/voice-bridged?{query}",
        timeout_s=max(1, int(left)),
        # Every call is recorded (CMCOB 2.3.2) and each recording stored with its session.
        recording_callback_url=twilio_voice.recording_callback_url(settings.public_base_url, wf),
    )
    deadline = answered + settings.abandon_after_answer_s - MESSAGE_START_ALLOWANCE_S
    background.add_task(_keep_the_budget, stores, temporal, telephony, call, form, deadline)
    return Response(twiml, media_type=TWIML)


@webhooks.post("/voice-bridged", response_class=Response, responses=TWIML_RESPONSE)
async def voice_bridged(
    wf: str,
    form: TwilioForm,
    stores: StoresDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
    session: str | None = None,
) -> Response:
    """The bridge's ``<Dial action>``: the agent answered and the conversation is over (hang up), or
    no agent answered within the budget (rang out, rejected, offline): the information message, and
    the call is abandoned. A customer who hung up while the agent was rung is not abandoned (they were
    not left waiting past the 2 seconds); Twilio ignores what we answer then."""
    if form.get("DialCallStatus") == "completed" or form.get("CallStatus") == "completed":
        return Response(twilio_voice.hang_up(), media_type=TWIML)
    await _decide_bridge(stores, form.get("CallSid", ""))
    call = await answered_calls.find_session(
        stores.postgres, workflow_id=_session(wf), session_id=session, call_sid=form.get("CallSid")
    )
    return await _abandon(
        stores, temporal, background, call, form, f"the agent's phone did not answer ({form.get('DialCallStatus')})"
    )


async def _keep_the_budget(
    stores: Stores,
    temporal: Client,
    telephony: TwilioTelephony,
    call: answered_calls.AnsweredSession,
    form: dict[str, str],
    deadline: float,
) -> None:
    """The 2 seconds whatever the carrier's ring timeout does: Twilio "always adds a 5 second timeout
    buffer" to a ``<Dial timeout>``, so an agent who accepts at 4 s would be put through to a customer
    left in silence. At the budget's end (less the message's start), unless an agent's phone has
    answered the bridge, the customer's call is moved to the information message and recorded
    abandoned, as the bridge's action would have done in time. A carrier that cannot be asked or
    told leaves the call to the session's finish, which asks the carrier again (abandoned_unseen)."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    call_sid = form.get("CallSid", "")
    try:
        if await telephony.agent_put_through(call_sid) or not await _decide_bridge(stores, call_sid):
            return  # an agent is on the line, or the bridge's action decided within the budget
        message = twilio_voice.abandoned_message(stores.settings.company_name, stores.settings.caller_id)
        await telephony.replace_twiml(call_sid, message)
    except TelephonyError as exc:  # the customer hung up meanwhile (the call is over), or Twilio is unreachable
        log.info("the 2-second guard left call %s as it was: %s", call_sid, exc)
        return
    log.warning("no agent on the line 2 s after the answer (the carrier rang on): call %s abandoned", call_sid)
    await answered_calls.record_abandoned(stores.postgres, session=call, called_number=form.get("To"))
    await _tell_session(temporal, call.workflow_id, call_sid)


async def _decide_bridge(stores: Stores, call_sid: str) -> bool:
    """Mark the bridge of ``call_sid`` decided (its action came, or the guard acts): True for the
    first to mark it, so the guard never starts the message over the action's."""
    key = f"{stores.settings.redis_prefix}:bridge-decided:{call_sid}"
    return bool(await stores.redis.set(key, "1", ex=BRIDGE_DECIDED_TTL_S, nx=True))


async def _abandon(
    stores: Stores,
    temporal: Client,
    background: BackgroundTasks,
    call: answered_calls.AnsweredSession | None,
    form: dict[str, str],
    reason: str,
) -> Response:
    """The information message for an answered call no agent can take, and the attempt recorded
    abandoned here (the 72 h cool-off reads it at once). The session is told after the response,
    best-effort: when its worker is down it learns on restart (the signal waits in its history)."""
    settings = stores.settings
    log.warning("answered call %s abandoned: %s", form.get("CallSid"), reason)
    await answered_calls.record_abandoned(stores.postgres, session=call, called_number=form.get("To"))
    if call is not None and not call.closed:
        background.add_task(_tell_session, temporal, call.workflow_id, form.get("CallSid", ""))
    return Response(twilio_voice.abandoned_message(settings.company_name, settings.caller_id), media_type=TWIML)


async def _tell_claimed(temporal: Client, workflow_id: str, event: AgentClaimed) -> None:
    try:
        await asyncio.wait_for(call_session_client.agent_claimed(temporal, workflow_id, event), SIGNAL_TIMEOUT_S)
    except (RPCError, TimeoutError) as exc:
        log.warning("a pooled call's agent was claimed but its session was not told: %s", type(exc).__name__)


async def _tell_session(temporal: Client, workflow_id: str, call_sid: str) -> None:
    try:
        await asyncio.wait_for(
            call_session_client.abandoned(temporal, workflow_id, AbandonedEvent(call_sid=call_sid)), SIGNAL_TIMEOUT_S
        )
    except (RPCError, TimeoutError) as exc:
        log.warning("the abandoned call was recorded but its session was not told: %s", type(exc).__name__)


@webhooks.post("/voice/recording", status_code=204)
async def voice_recording(form: TwilioForm, stores: StoresDep, wf: str | None = None) -> Response:
    """Twilio's recording status callback: the recording is stored with its call, session, customer
    and claims (a repeat, or a later status of the same recording, updates the one row)."""
    await recordings.store_from_callback(
        postgres=stores.postgres, replica=stores.replica, form=form, workflow_id=wf, at=clock.instant()
    )
    return Response(status_code=204)


@webhooks.post("/voice/inbound", response_class=Response, responses=TWIML_RESPONSE)
async def voice_inbound(request: Request, form: TwilioForm, stores: StoresDep) -> Response:
    """A call to our number (a customer returning our call): answered here from PostgreSQL and
    Redis, at once. The agent who last called them if free, else a free agent assigned to their
    queue, else any free agent (only trained agents for a vulnerable caller), is rung (their
    workspace shows the customer while it rings); out of hours or with nobody free, the opening
    hours. Every returned call is recorded with where it went; one
    that rings an agent is followed by its InboundCallWorkflow (session, presence, outcome). The
    caller never waits on Temporal: when it cannot be reached the call is still routed and recorded,
    and the agent leg's first status callback starts the workflow instead."""
    settings = stores.settings
    call_sid, from_ = form.get("CallSid", ""), form.get("From", "")
    at = clock.instant()
    routing = await inbound_calls.route(stores=stores, from_=from_, at=at)
    await inbound_calls.record(stores.postgres, call_sid=call_sid, from_=from_, routing=routing, at=at)
    if routing.agent_id is None:
        return _opening_hours(settings, closed=routing.outcome == "out_of_hours")
    # As recorded: a Twilio retry of this webhook rings the agent the first request chose.
    call = await inbound_calls.find(stores.postgres, call_sid)
    if call is None or call.agent_id is None:
        return _opening_hours(settings, closed=False)
    started = await _follow_returned_call(request, settings, call)
    hooks = f"{settings.public_base_url.rstrip('/')}/api/v1/webhooks/twilio"
    wf = inbound_call_workflow_id(call_sid)
    twiml = twilio_voice.ring_agent_for_returned_call(
        twilio_voice.agent_identity(call.agent_id),
        action_url=f"{hooks}/voice/inbound/dialled",
        recording_callback_url=twilio_voice.recording_callback_url(
            settings.public_base_url, f"call-{call.user_id}" if call.user_id is not None else wf
        ),
        timeout_s=inbound_calls.RING_TIMEOUT_S,
        status_callback_url=f"{hooks}/voice/inbound/status?wf={wf}",
    )
    if not started:
        log.warning("returned call %s routed without its workflow (Temporal unavailable)", wf)
    return Response(twiml, media_type=TWIML)


async def _follow_returned_call(request: Request, settings: Settings, call: inbound_calls.InboundCall) -> bool:
    """Start the call's workflow, connecting to Temporal included, for at most START_TIMEOUT_S: the
    caller hears nothing until the TwiML is returned."""
    input = inbound_calls.workflow_input(call, settings)
    if input is None:
        return False

    async def start() -> bool:
        temporal = await temporal_or_none(request)
        if temporal is None:
            return False
        await inbound_call_client.start_inbound_call(temporal, task_queue=settings.temporal_task_queue, input=input)
        return True

    try:
        return await asyncio.wait_for(start(), START_TIMEOUT_S)
    except (RPCError, TimeoutError) as exc:
        log.warning("the returned call's workflow did not start: %s", type(exc).__name__)
        return False


@webhooks.post("/voice/inbound/status", status_code=204)
async def voice_inbound_status(wf: str, form: TwilioForm, stores: StoresDep, temporal: TemporalDep) -> Response:
    """A status of the agent's leg of a returned call: a signal to the call's workflow, which it
    starts if the inbound webhook could not (signal-with-start). A status for a workflow that has
    closed is acknowledged and dropped."""
    call_sid = call_sid_of(wf)
    call = await inbound_calls.find(stores.postgres, call_sid) if call_sid else None
    input = inbound_calls.workflow_input(call, stores.settings) if call is not None else None
    status = form.get("CallStatus")
    if input is None or not status:
        return Response(status_code=204)  # no returned call rang an agent under this id
    seen = f"{stores.settings.redis_prefix}:twilio:seen:{form.get('CallSid', '')}:{status}"
    if await stores.redis.exists(seen):
        return Response(status_code=204)
    event = CallStatusEvent(
        call_sid=form.get("CallSid", ""),
        status=status,
        sequence=int(form.get("SequenceNumber") or 0),
        duration_s=int(form["CallDuration"]) if form.get("CallDuration", "").isdigit() else None,
    )
    await inbound_call_client.call_status(
        temporal, task_queue=stores.settings.temporal_task_queue, input=input, event=event
    )  # an RPCError is a 503: not seen, and Twilio's retry delivers it
    await stores.redis.set(seen, "1", ex=DEDUP_TTL_S)
    return Response(status_code=204)


@webhooks.post("/voice/inbound/dialled", response_class=Response, responses=TWIML_RESPONSE)
async def voice_inbound_dialled(form: TwilioForm, stores: StoresDep) -> Response:
    """The returned call's ``<Dial action>``: over after a conversation, else the opening hours."""
    if form.get("DialCallStatus") == "completed" or form.get("CallStatus") == "completed":
        return Response(twilio_voice.hang_up(), media_type=TWIML)
    return _opening_hours(stores.settings, closed=False)


def _opening_hours(settings: Settings, *, closed: bool) -> Response:
    hours = inbound_calls.opening_hours_text(settings)
    return Response(twilio_voice.opening_hours_message(settings.company_name, hours, closed=closed), media_type=TWIML)
