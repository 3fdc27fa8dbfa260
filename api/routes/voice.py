"""Twilio voice: the browser's access token, TwiML, and status callbacks.

Webhooks are not authenticated by token but by ``X-Twilio-Signature`` over our public URL and the
form: a forged or replayed-with-changes request is a 403 and changes nothing. A repeated callback
(Twilio retries) is acknowledged without signalling twice; the workflow also ignores repeats and
out-of-order statuses, so state changes once and in order."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from temporalio.service import RPCError

from api.auth import PROTECTED_RESPONSES, require
from api.deps import SettingsDep, StoresDep, TemporalDep
from api.errors import Forbidden
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.calls.messages import AbandonedEvent, CallStatusEvent
from dialler.config import Settings
from dialler.integrations import twilio_voice
from dialler.queues.runtime import queue_engine
from dialler.recordings import service as recordings
from workflows import call_session_client

log = logging.getLogger("dialler.api.voice")
router = APIRouter(prefix="/voice", tags=["voice"], responses=PROTECTED_RESPONSES)
webhooks = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])
TWIML = "application/xml"
DEDUP_TTL_S = 24 * 3600


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


def device_key(settings: Settings, agent_id: int) -> str:
    return f"{settings.redis_prefix}:device:{agent_id}"


@router.post("/device-ready", status_code=204)
async def device_ready(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.VOICE_TOKEN))]
) -> Response:
    """The agent's browser is connected and can take a bridged call (heartbeat, 60 s)."""
    await stores.redis.set(device_key(stores.settings, agent.id), "1", ex=60)
    return Response(status_code=204)


async def twilio_form(request: Request) -> dict[str, str]:
    """The webhook's form, once its signature over our public URL is verified (403 otherwise)."""
    settings: Settings = request.app.state.settings
    body = (await request.body()).decode()
    params = parse_qsl(body, keep_blank_values=True)
    url = (
        settings.public_base_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    )
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
async def voice_status(wf: str, form: TwilioForm, stores: StoresDep, temporal: TemporalDep) -> Response:
    """Twilio's call status callback: becomes a signal to the call's session."""
    call_sid, call_status = form.get("CallSid", ""), form.get("CallStatus")
    if not call_status:  # e.g. the async answering-machine verdict: nothing to move
        return Response(status_code=204)
    seen = f"{stores.settings.redis_prefix}:twilio:seen:{call_sid}:{call_status}:{form.get('SequenceNumber', '')}"
    if not await stores.redis.set(seen, "1", nx=True, ex=DEDUP_TTL_S):
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
    except RPCError:
        await stores.redis.delete(seen)  # let Twilio's retry deliver it
        raise
    return Response(status_code=204)


TWIML_RESPONSE = {200: {"description": "TwiML for Twilio", "content": {TWIML: {"schema": {"type": "string"}}}}}


@webhooks.post("/voice-answer", response_class=Response, responses=TWIML_RESPONSE)
async def voice_answer(wf: str, form: TwilioForm, stores: StoresDep, temporal: TemporalDep) -> Response:
    """TwiML when the customer answers a call we placed: bridge to the agent's browser, or, when no
    agent is there within the limit (progressive mode), play the information message: abandoned."""
    settings = stores.settings
    session = _session(wf)
    view = await call_session_client.session_view(temporal, session)
    status_url = f"{settings.public_base_url.rstrip('/')}/api/v1/webhooks/twilio/voice-status?wf={wf}"
    lease = await queue_engine(stores).lease_of(view.user_id)
    if lease is None or lease.agent_id != view.agent_id:
        return Response(twilio_voice.reject("Sorry, we cannot connect this call."), media_type=TWIML)
    deadline = asyncio.get_running_loop().time() + settings.abandon_after_answer_s
    while not await _agent_ready(stores, view.agent_id, progressive=view.progressive):
        if asyncio.get_running_loop().time() >= deadline:
            await call_session_client.abandoned(temporal, session, AbandonedEvent(call_sid=form.get("CallSid", "")))
            return Response(twilio_voice.abandoned_message(settings.company_name, settings.caller_id), media_type=TWIML)
        await asyncio.sleep(0.1)
    twiml = twilio_voice.bridge_to_agent(
        twilio_voice.agent_identity(view.agent_id),
        status_url,
        caller_id=settings.caller_id,
        announce=twilio_voice.RECORDING_NOTICE,
    )
    return Response(twiml, media_type=TWIML)


async def _agent_ready(stores, agent_id: int, *, progressive: bool) -> bool:  # type: ignore[no-untyped-def]
    """An agent who pressed "call" is at their screen; a progressive call needs their device online."""
    if not progressive:
        return True
    return bool(await stores.redis.exists(device_key(stores.settings, agent_id)))


@webhooks.post("/voice/recording", status_code=204)
async def voice_recording(form: TwilioForm, stores: StoresDep, wf: str | None = None) -> Response:
    """Twilio's recording status callback: the recording is stored with its call, session, customer
    and claims (a repeat, or a later status of the same recording, updates the one row)."""
    await recordings.store_from_callback(
        postgres=stores.postgres, replica=stores.replica, form=form, workflow_id=wf, at=clock.instant()
    )
    return Response(status_code=204)
