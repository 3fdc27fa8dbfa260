"""Starting a SendSmsWorkflow from outside it (the API, activities).

Names the workflow by string, importing no workflow definition (see workflows/callback_client.py
for why); tests/workflows/test_clients.py keeps the name in step."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from dialler.comms.messages import SendSmsInput

WORKFLOW = "SendSmsWorkflow"


async def start_send_sms(
    client: Client, *, task_queue: str, workflow_id: str, input: SendSmsInput, once: bool = False
) -> None:
    """Start one text's workflow; its id is new per text (the message row travels by id). ``once``: the
    id is the business key of what the text says (a confirmation), so a closed workflow with that id
    is not started again either (WorkflowAlreadyStartedError)."""
    await client.start_workflow(
        WORKFLOW,
        input,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE if once else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
