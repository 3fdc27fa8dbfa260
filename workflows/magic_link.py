"""MagicLinkWorkflow: text a one-time portal link, wait for it to be used or to expire, record which.

    issue + text ──▶ waiting ──used (signal from the verify endpoint)──▶ record "used"
         │              └──────expiry (durable timer)──────────────────▶ record "expired"
         └─ not sent (opted out, no mobile, signed meanwhile, carrier refused) ──▶ record it

The database is the truth: the verify endpoint consumes the token atomically there, and the result is
read from the link's row when the workflow ends, so a lost signal at worst delays "used" to expiry.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.sms import SmsActivities
    from dialler import search_attributes as sa
    from dialler.comms.messages import (
        IssueMagicLinkInput,
        LinkUsed,
        MagicLinkInput,
        MagicLinkResult,
        MagicLinkView,
        RecordLinkResultInput,
        SendStatus,
    )
    from workflows.sms import RECORD_RETRY, RECORD_TIMEOUT, SEND_RETRY, SEND_TIMEOUT

# The verify endpoint and the timer may race at the last second: the row decides, read a moment later.
EXPIRY_GRACE = timedelta(seconds=1)


@workflow.defn
class MagicLinkWorkflow:
    @workflow.init
    def __init__(self, input: MagicLinkInput) -> None:
        self._link_id: int | None = None
        self._expires_at: datetime | None = None
        self._status = "sending"
        self._used = False

    @workflow.run
    async def run(self, input: MagicLinkInput) -> MagicLinkResult:
        attributes = [sa.USER_ID.value_set(str(input.user_id))]
        if input.agent_id is not None:
            attributes.append(sa.AGENT_ID.value_set(str(input.agent_id)))
        workflow.upsert_search_attributes(attributes)
        workflow_id = workflow.info().workflow_id
        try:
            issued = await workflow.execute_activity_method(
                SmsActivities.issue_magic_link,
                IssueMagicLinkInput(workflow_id, input),
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("the magic link could not be sent; giving up")
            abandoned = await workflow.execute_activity_method(
                SmsActivities.abandon_magic_link,
                workflow_id,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
            )
            self._status = "failed"
            return abandoned or MagicLinkResult(0, "failed")
        self._link_id, self._expires_at = issued.link_id, issued.expires_at
        if issued.send.status != SendStatus.SENT:
            return await self._record(RecordLinkResultInput(issued.link_id, unsent_status=issued.send.status))

        self._status = "waiting"
        remaining = issued.expires_at - workflow.now()
        if remaining > timedelta(0) and not self._used:
            with suppress(TimeoutError):  # expired unused
                await workflow.wait_condition(lambda: self._used, timeout=remaining + EXPIRY_GRACE)
        return await self._record(RecordLinkResultInput(issued.link_id))

    @workflow.signal
    def used(self, event: LinkUsed) -> None:
        # The customer may click before the issuing activity's completion is recorded here.
        if self._link_id is None or event.link_id == self._link_id:
            self._used = True

    @workflow.query
    def view(self) -> MagicLinkView:
        return MagicLinkView(self._link_id, self._status, self._expires_at)

    async def _record(self, request: RecordLinkResultInput) -> MagicLinkResult:
        result = await workflow.execute_activity_method(
            SmsActivities.record_magic_link_result,
            request,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
        self._status = result.result
        return result
