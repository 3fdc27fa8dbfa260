"""Starting and signalling ``InboundCallWorkflow`` (the API's side): once per returned call.

Named by string, as every client is (importing the workflow would load its activities into the API);
tests/workflows/test_clients.py keeps the names in step with the workflow."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler.calls.messages import CallStatusEvent
from dialler.calls.returned import InboundCallInput, inbound_call_workflow_id

WORKFLOW = "InboundCallWorkflow"
CALL_STATUS_SIGNAL = "call_status"


async def start_inbound_call(client: Client, *, task_queue: str, input: InboundCallInput) -> bool:
    """Start following a returned call; False if it is followed already (or was: a Twilio retry, or
    a status callback that started it first)."""
    try:
        await client.start_workflow(
            WORKFLOW,
            input,
            id=inbound_call_workflow_id(input.call_sid),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def call_status(client: Client, *, task_queue: str, input: InboundCallInput, event: CallStatusEvent) -> bool:
    """A status of the agent's leg, delivered with the start when the webhook could not start the
    workflow (signal-with-start); False when the call's workflow has already closed."""
    try:
        await client.start_workflow(
            WORKFLOW,
            input,
            id=inbound_call_workflow_id(input.call_sid),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            start_signal=CALL_STATUS_SIGNAL,
            start_signal_args=[event],
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
