"""Starting an ErasureWorkflow from outside it (the API), by name (see workflows/callback_client.py)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from dialler.customers.personal_data import ErasureInput, ErasureReport

WORKFLOW = "ErasureWorkflow"


def erasure_workflow_id(user_id: int) -> str:
    return f"erasure-{user_id}"


async def start_erasure(
    client: Client, *, task_queue: str, input: ErasureInput
) -> WorkflowHandle[object, ErasureReport]:
    """One erasure per customer at a time: asking again while one runs joins it; after it has closed,
    a new one starts (and, erasure being idempotent, erases only what has appeared since)."""
    return await client.start_workflow(
        WORKFLOW,
        input,
        id=erasure_workflow_id(input.user_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        result_type=ErasureReport,
    )
