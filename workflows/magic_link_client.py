"""Starting and signalling a MagicLinkWorkflow from outside it (the API).

Names the workflow and its signal by string, importing no workflow definition (see
workflows/callback_client.py for why); tests/workflows/test_clients.py keeps the names in step."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from dialler.comms.messages import LinkUsed, MagicLinkInput

WORKFLOW = "MagicLinkWorkflow"
USED_SIGNAL = "used"


async def start_magic_link(client: Client, *, task_queue: str, workflow_id: str, input: MagicLinkInput) -> None:
    """Start one link's workflow: it sends the link, waits for its use or expiry, and records which.
    Its id (dialler.comms.messages.magic_link_workflow_id) is new per link."""
    await client.start_workflow(
        WORKFLOW, input, id=workflow_id, task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.FAIL
    )


async def link_used(client: Client, workflow_id: str, event: LinkUsed) -> None:
    """Tell the link's workflow it was used (RPCError when it cannot be told)."""
    await client.get_workflow_handle(workflow_id).signal(USED_SIGNAL, event)
