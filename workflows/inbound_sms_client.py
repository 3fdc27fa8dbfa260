"""Starting ``InboundSmsWorkflow`` (the API's side): once per text Twilio delivered."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler.comms.inbound import InboundSmsInput, inbound_sms_workflow_id

# Named by string, as every client does: importing the workflow would load its activities into the API.
WORKFLOW = "InboundSmsWorkflow"


async def start_inbound_sms(client: Client, *, task_queue: str, message_sid: str, input: InboundSmsInput) -> bool:
    """Start the fan-out of one inbound text; False if it was started before (a Twilio retry)."""
    try:
        await client.start_workflow(
            WORKFLOW,
            input,
            id=inbound_sms_workflow_id(message_sid),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
