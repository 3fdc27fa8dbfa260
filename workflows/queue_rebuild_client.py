"""Starting an on-demand QueueRebuildWorkflow from outside it (the API, the operator CLI).

The business-key id and the task queue live here. Names the workflow by string, importing no
workflow definition (see workflows/callback_client.py for why); tests/workflows/test_clients.py
keeps the name in step. The scheduled rebuild is set up by the worker (workers/registry.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler.config import Settings
from dialler.queues.rebuild import RebuildInput, RebuildReport

WORKFLOW = "QueueRebuildWorkflow"


def rebuild_input(*, trigger: str, requested_by_agent_id: int | None = None) -> tuple[RebuildInput, str]:
    """The input and a business-key workflow id for an on-demand rebuild (not for use in workflows)."""
    return RebuildInput(
        trigger=trigger, requested_by_agent_id=requested_by_agent_id
    ), f"queue-rebuild-{trigger}-{uuid.uuid4().hex[:12]}"


async def start_rebuild(
    client: Client, settings: Settings, *, trigger: str, requested_by_agent_id: int | None = None
) -> WorkflowHandle:
    """Start a rebuild now, without waiting for it; the handle's id names it (for the Temporal UI)."""
    workflow_input, workflow_id = rebuild_input(trigger=trigger, requested_by_agent_id=requested_by_agent_id)
    return await client.start_workflow(
        WORKFLOW, workflow_input, id=workflow_id, task_queue=settings.temporal_task_queue, result_type=RebuildReport
    )


def refill_workflow_id(settings: Settings) -> str:
    """One refill at a time per floor (its task queue): the agents who all find the queues empty at once
    start one rebuild between them; once it has finished the id is free for the next loss."""
    return f"queue-rebuild-refill-{settings.temporal_task_queue}"


async def start_refill(client: Client, settings: Settings, *, rpc_timeout: timedelta | None = None) -> bool:
    """Refill queues whose store lost them (Redis flushed or replaced): a rebuild now, not at the next
    scheduled one. False when a refill is already running."""
    try:
        await client.start_workflow(
            WORKFLOW,
            RebuildInput(trigger="refill"),
            id=refill_workflow_id(settings),
            task_queue=settings.temporal_task_queue,
            result_type=RebuildReport,
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def run_rebuild(client: Client, settings: Settings, *, trigger: str) -> RebuildReport:
    """Run a rebuild and wait for its report."""
    handle = await start_rebuild(client, settings, trigger=trigger)
    report: RebuildReport = await handle.result()
    return report
