"""Starting and talking to a CallSessionWorkflow from outside it: the API (next call, the agent's
dial, hang-up and outcome, the session's view) and the Twilio voice webhooks.

The id, task queue and id policies live here, once. Names the workflow, its signals, update and
query by string, importing no workflow definition (see workflows/callback_client.py for why);
tests/workflows/test_clients.py keeps the names in step with CallSessionWorkflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from dialler import search_attributes as sa
from dialler.calls.messages import (
    AbandonedEvent,
    AgentClaimed,
    CallSessionInput,
    CallSessionView,
    CallStatusEvent,
    DialRequest,
    OutcomeAccepted,
    OutcomeInput,
    call_workflow_id,
)

WORKFLOW = "CallSessionWorkflow"
DIAL_SIGNAL = "dial"
HANG_UP_SIGNAL = "hang_up"
CALL_STATUS_SIGNAL = "call_status"
ABANDONED_SIGNAL = "abandoned"
AGENT_CLAIMED_SIGNAL = "agent_claimed"
OUTCOME_UPDATE = "submit_outcome"
OUTCOME_RECEIVED_SIGNAL = "outcome_received"
VIEW_QUERY = "view"


async def start_call_session(client: Client, *, task_queue: str, input: CallSessionInput) -> bool:
    """Start the session; False if a session of this customer's is still running (the workflow id is
    the customer's, so there is never a second one). A closed one does not stand in the way."""
    try:
        await client.start_workflow(
            WORKFLOW,
            input,
            id=call_workflow_id(input.user_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            # Filed for supervisors from the start: the session then upserts none of these itself.
            search_attributes=TypedSearchAttributes(
                sa.call_session_start(
                    user_id=input.user_id, agent_id=None if input.pooled else input.agent_id, queue=input.queue
                )
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


class CallSessionStarter:
    """Starts call sessions over a Temporal client: what the API hands the next-call service."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def __call__(self, input: CallSessionInput) -> bool:
        return await start_call_session(self.client, task_queue=self.task_queue, input=input)


def session_handle(client: Client, workflow_id: str) -> WorkflowHandle:
    return client.get_workflow_handle(workflow_id)


async def session_view(client: Client, workflow_id: str, *, rpc_timeout: timedelta | None = None) -> CallSessionView:
    """The session's view, from the workflow (RPCError when it cannot be read)."""
    view: CallSessionView = await session_handle(client, workflow_id).query(
        VIEW_QUERY, result_type=CallSessionView, rpc_timeout=rpc_timeout
    )
    return view


async def dial(client: Client, workflow_id: str, request: DialRequest) -> None:
    await session_handle(client, workflow_id).signal(DIAL_SIGNAL, request)


async def hang_up(client: Client, workflow_id: str) -> None:
    await session_handle(client, workflow_id).signal(HANG_UP_SIGNAL)


async def submit_outcome(
    client: Client, workflow_id: str, outcome: OutcomeInput, *, rpc_timeout: timedelta
) -> OutcomeAccepted:
    """The agent's outcome, validated by the session (WorkflowUpdateFailedError when refused)."""
    accepted: OutcomeAccepted = await session_handle(client, workflow_id).execute_update(
        OUTCOME_UPDATE, outcome, result_type=OutcomeAccepted, rpc_timeout=rpc_timeout
    )
    return accepted


async def outcome_received(client: Client, workflow_id: str, *, rpc_timeout: timedelta | None = None) -> None:
    """Tell the session an outcome is kept for it (``dialler.calls.received``) that the Update could
    not deliver. A signal is durable without a worker: the session takes the outcome when it resumes."""
    await session_handle(client, workflow_id).signal(OUTCOME_RECEIVED_SIGNAL, rpc_timeout=rpc_timeout)


async def call_status(client: Client, workflow_id: str, event: CallStatusEvent) -> None:
    """A Twilio status callback for the session's call (RPCError when it cannot be delivered)."""
    await session_handle(client, workflow_id).signal(CALL_STATUS_SIGNAL, event)


async def abandoned(client: Client, workflow_id: str, event: AbandonedEvent) -> None:
    """The customer answered and no agent was there in time: the call is abandoned."""
    await session_handle(client, workflow_id).signal(ABANDONED_SIGNAL, event)


async def agent_claimed(client: Client, workflow_id: str, event: AgentClaimed) -> None:
    """A pooled call was answered and this agent claimed for it (the lease already names them)."""
    await session_handle(client, workflow_id).signal(AGENT_CLAIMED_SIGNAL, event)
