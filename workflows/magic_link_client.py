"""Starting ``MagicLinkWorkflow`` (the API's side)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from dialler.comms.messages import MagicLinkInput
from workflows.magic_link import MagicLinkWorkflow


async def start_magic_link(client: Client, *, task_queue: str, workflow_id: str, input: MagicLinkInput) -> None:
    """Start one link's workflow: it sends the link, waits for its use or expiry, and records which."""
    await client.start_workflow(
        MagicLinkWorkflow.run,
        input,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
