"""SendSmsWorkflow: one text, sent durably.

The API starts one per text an agent sends (the message is written first and travels by id), the
inbound-SMS webhook one per confirmation (STOP, START, callback cancelled), and CallbackWorkflow one
per confirmation or reminder (as an abandoned child, so that a slow carrier never delays a callback).
Delivery statuses arrive later by webhook and are written to ``sms_messages`` directly.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.sms import SmsActivities
    from dialler import search_attributes as sa
    from dialler.comms.messages import SendSmsInput, SendSmsRequest, SendStatus, SmsOutcome

# Named timeouts and retries of every SMS step (the magic-link and callback workflows use them too).
SEND_TIMEOUT = timedelta(seconds=30)
# About ten minutes of retries: a text that cannot go out by then is reported failed to the agent
# rather than arriving hours late.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
)
RECORD_TIMEOUT = timedelta(seconds=20)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60)
)


@workflow.defn
class SendSmsWorkflow:
    @workflow.run
    async def run(self, input: SendSmsInput) -> SmsOutcome:
        attributes = []
        if input.user_id is not None:
            attributes.append(sa.USER_ID.value_set(str(input.user_id)))
        if input.agent_id is not None:
            attributes.append(sa.AGENT_ID.value_set(str(input.agent_id)))
        if attributes:
            workflow.upsert_search_attributes(attributes)
        request = SendSmsRequest(idempotency_key=f"{workflow.info().workflow_id}:sms", sms=input)
        try:
            return await workflow.execute_activity_method(
                SmsActivities.send, request, start_to_close_timeout=SEND_TIMEOUT, retry_policy=SEND_RETRY
            )
        except ActivityError:
            workflow.logger.warning("the text could not be sent; giving up")
            await workflow.execute_activity_method(
                SmsActivities.give_up, request, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY
            )
            return SmsOutcome(SendStatus.FAILED, input.message_id, "the carrier could not be reached")
