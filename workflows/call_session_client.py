"""Starting ``CallSessionWorkflow`` (the API's side): one open session per customer."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler.calls.messages import CallSessionInput, call_workflow_id
from workflows.call_session import CallSessionWorkflow


async def start_call_session(client: Client, *, task_queue: str, input: CallSessionInput) -> bool:
    """Start the session; False if a session of this customer's is still running (the workflow id is
    the customer's, so there is never a second one). A closed one does not stand in the way."""
    try:
        await client.start_workflow(
            CallSessionWorkflow.run,
            input,
            id=call_workflow_id(input.user_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


class CallSessionStarter:
    """``dialler.calls.service.StartSession`` over a Temporal client: what the API hands the service."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def __call__(self, input: CallSessionInput) -> bool:
        return await start_call_session(self.client, task_queue=self.task_queue, input=input)
