"""Erasure's activities: first at Twilio (text bodies redacted, recordings past their CMCOB period
deleted), then in the dialler's own stores with the audit row. Both idempotent: redacting a redacted
body, deleting a deleted recording (404) and blanking blank columns change nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from temporalio import activity

from dialler.audit.service import AuditContext
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.customers import personal_data
from dialler.customers.personal_data import ErasureInput, ErasureReport, KeptRecording, TwilioErasure
from dialler.integrations.twilio import delete_recording, redact_message_body
from dialler.recordings import service as recordings
from dialler.runtime import Stores


class ErasureActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def erase_at_twilio(self, input: ErasureInput) -> TwilioErasure:
        settings = self.stores.settings
        async with self.stores.postgres.connect() as conn:
            sids = (
                await conn.scalars(
                    select(SmsMessage.twilio_sid)
                    .join(SmsConversation, SmsConversation.id == SmsMessage.conversation_id)
                    .where(SmsConversation.user_id == input.user_id, SmsMessage.twilio_sid.is_not(None))
                    .order_by(SmsMessage.id)
                )
            ).all()
        redacted = 0
        for sid in sids:
            if sid is not None and await redact_message_body(settings, sid):
                redacted += 1
            activity.heartbeat()
        now = datetime.now(UTC)
        split = await recordings.of_customer(
            postgres=self.stores.postgres,
            replica=self.stores.replica,
            user_id=input.user_id,
            now=now,
            retention_months=settings.recording_retention_months,
        )
        for sid in split.erasable:
            await delete_recording(settings, sid)
            await recordings.mark_deleted(self.stores.postgres, sid, at=now)
            activity.heartbeat()
        kept = [KeptRecording(sid, None if at is None else at.date().isoformat()) for sid, at in split.kept]
        return TwilioErasure(message_bodies=redacted, recordings_deleted=len(split.erasable), recordings_kept=kept)

    @activity.defn
    async def erase_in_dialler(self, input: ErasureInput, at_twilio: TwilioErasure) -> ErasureReport:
        async with self.stores.sessions() as session:
            return await personal_data.erase(
                session=session,
                redis=self.stores.redis,
                redis_prefix=self.stores.settings.redis_prefix,
                user_id=input.user_id,
                ctx=AuditContext(input.actor_agent_id, input.client_ip, input.request_id),
                at_twilio=at_twilio,
            )
