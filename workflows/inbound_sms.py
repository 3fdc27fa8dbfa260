"""InboundSmsWorkflow: what a customer's STOP, START or CANCEL asks of the queues, callbacks and texts.

The webhook has already recorded the text and the opt-out (or opt-in) in PostgreSQL, which every
"may we contact" check reads, before it starts this workflow (id ``inbound-sms-<MessageSid>``: a
Twilio retry never fans out twice). Each step is idempotent and retried until it succeeds:

* STOP: out of every queue; the live callback cancelled with the reason; a review item when it came
  on the day of a call to the customer; one confirmation per standing opt-out (the text's workflow
  id is the opt-out episode's).
* START (an opt-out lifted): placed again by the queue rules; one confirmation.
* CANCEL (in reply to a callback text): the callback cancelled; one confirmation.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.inbound_sms import InboundSmsActivities
    from dialler.callbacks.messages import CancelInput, callback_workflow_id
    from dialler.comms.inbound import (
        CANCEL_CALLBACK,
        CANCEL_REASON,
        OPT_IN,
        OPT_OUT,
        STOP_REASON,
        InboundSmsInput,
    )
    from dialler.comms.messages import SendSmsInput, sms_workflow_id
    from dialler.comms.templates import TemplateName
    from dialler.compliance.reviews import StopReviewInput
    from workflows.callback import CallbackWorkflow
    from workflows.sms import SendSmsWorkflow

STEP_TIMEOUT = timedelta(seconds=30)
# No maximum: an opt-out must reach the queues however long Redis or the replica is away.
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn
class InboundSmsWorkflow:
    @workflow.run
    async def run(self, input: InboundSmsInput) -> None:
        users = list(input.user_ids)
        first = users[0] if users else None
        if input.action == OPT_OUT:
            # First: nobody is offered this customer again (the dial-time check already refuses them).
            if users:
                await self._step(InboundSmsActivities.leave_queues, users)
            for user_id in users:
                await self._cancel_callback(user_id, STOP_REASON)
            # Added after the first version: fan-outs already recorded replay without it.
            if users and workflow.patched("stop-after-call-review"):
                await self._step(InboundSmsActivities.open_stop_reviews, StopReviewInput(input.message_id, users))
            await self._confirm(
                sms_workflow_id("stop", f"{input.conversation_id}-{input.opt_out_episode}"),
                SendSmsInput(
                    user_id=first,
                    template=TemplateName.STOP_CONFIRMATION.value,
                    conversation_id=input.conversation_id,
                ),
            )
        elif input.action == OPT_IN:
            if users:
                await self._step(InboundSmsActivities.replace_in_queues, users)
            await self._confirm(
                sms_workflow_id("start", input.message_id),
                SendSmsInput(
                    user_id=first,
                    template=TemplateName.START_CONFIRMATION.value,
                    conversation_id=input.conversation_id,
                ),
            )
        elif input.action == CANCEL_CALLBACK:
            for user_id in users:
                await self._cancel_callback(user_id, CANCEL_REASON)
            await self._confirm(
                sms_workflow_id("callback-cancelled", input.message_id),
                SendSmsInput(
                    user_id=first,
                    template=TemplateName.CALLBACK_CANCELLED.value,
                    conversation_id=input.conversation_id,
                ),
            )

    async def _step(self, method, arg) -> None:  # type: ignore[no-untyped-def]
        await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )

    async def _cancel_callback(self, user_id: int, reason: str) -> None:
        handle = workflow.get_external_workflow_handle_for(CallbackWorkflow.run, callback_workflow_id(user_id))
        with suppress(FailureError):  # no live callback (never booked, or already over): nothing to cancel
            await handle.signal(CallbackWorkflow.cancel, CancelInput(reason=reason))

    async def _confirm(self, workflow_id: str, text: SendSmsInput) -> None:
        """The confirmation in a workflow of its own (a slow carrier never holds this one), started
        once: its id is the business key of what it confirms, and a closed one is not started again."""
        with suppress(WorkflowAlreadyStartedError):
            await workflow.start_child_workflow(
                SendSmsWorkflow.run,
                text,
                id=workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
