"""A call the Twilio emulator records, for the recording tests: the product's own Twilio client places
it, and the emulator posts the signed recording status callback to the API when it ends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from dialler.calls.models import CallSession
from dialler.integrations import twilio_voice
from dialler.integrations.twilio import twilio_client
from dialler.runtime import Stores


async def recorded_call(stores: Stores, user_id: int) -> tuple[uuid.UUID, str]:
    """A call session for ``user_id`` whose call Twilio records (the emulator posts the signed
    recording callback to the API when the call ends). The session's id and the call's sid."""
    settings = stores.settings
    session_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with stores.sessions() as session:
        session.add(
            CallSession(
                id=session_id,
                workflow_id=f"call-{user_id}",
                user_id=user_id,
                queue="unsigned",
                phone_e164="+447700900123",
                status="in_progress",
                started_at=now,
            )
        )
        await session.commit()
    client = twilio_client(settings)
    call = await asyncio.to_thread(
        lambda: client.calls.create(
            to="+447700900123",
            from_=settings.caller_id,
            twiml='<Response><Pause length="3"/></Response>',
            record=True,
            recording_channels="dual",
            recording_status_callback=twilio_voice.recording_callback_url(settings.public_base_url, f"call-{user_id}"),
        )
    )
    async with stores.postgres.begin() as conn:
        await conn.execute(
            text("UPDATE call_sessions SET twilio_call_sid = :sid WHERE id = :id"), {"sid": call.sid, "id": session_id}
        )
    return session_id, str(call.sid)
