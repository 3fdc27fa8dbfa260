"""Starting ``SendSmsWorkflow`` (the API's side)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from dialler.comms.messages import SendSmsInput
from workflows.sms import SendSmsWorkflow


async def start_send_sms(client: Client, *, task_queue: str, workflow_id: str, input: SendSmsInput) -> None:
    """Start one text's workflow; its id is new per text (the message row travels by id)."""
    await client.start_workflow(
        SendSmsWorkflow.run,
        input,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
