"""Recording retention: delete at Twilio, then mark deleted, the recordings whose claims ended longer
ago than the retention period. Idempotent: a recording Twilio no longer has is marked deleted all the
same, and one already marked is not selected again."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from dialler.integrations.twilio import delete_recording
from dialler.recordings import service
from dialler.recordings.messages import PurgeInput, PurgeResult
from dialler.runtime import Stores


class RecordingActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def purge_expired_recordings(self, input: PurgeInput) -> PurgeResult:
        settings = self.stores.settings
        now = datetime.now(UTC)
        due = await service.expired(
            postgres=self.stores.postgres,
            replica=self.stores.replica,
            now=now,
            retention_months=settings.recording_retention_months,
            limit=input.batch,
        )
        for recording in due:
            await delete_recording(settings, recording.sid)
            await service.mark_deleted(self.stores.postgres, recording.sid, at=datetime.now(UTC))
            activity.heartbeat()
        activity.logger.info("deleted %d recordings past retention", len(due))
        return PurgeResult(deleted=len(due), more=len(due) == input.batch)
