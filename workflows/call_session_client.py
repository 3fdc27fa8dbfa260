"""Talking to a CallSessionWorkflow from outside it: the Twilio voice webhooks' side.

Names the workflow's signals and query by string, importing no workflow definition (see
workflows/callback_client.py for why); tests/workflows/test_clients.py keeps the names in step.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle

from dialler.calls.messages import AbandonedEvent, CallSessionView, CallStatusEvent

WORKFLOW = "CallSessionWorkflow"
CALL_STATUS_SIGNAL = "call_status"
ABANDONED_SIGNAL = "abandoned"
VIEW_QUERY = "view"


def session_handle(client: Client, workflow_id: str) -> WorkflowHandle:
    return client.get_workflow_handle(workflow_id)


async def call_status(client: Client, workflow_id: str, event: CallStatusEvent) -> None:
    """A Twilio status callback for the session's call (RPCError when it cannot be delivered)."""
    await session_handle(client, workflow_id).signal(CALL_STATUS_SIGNAL, event)


async def abandoned(client: Client, workflow_id: str, event: AbandonedEvent) -> None:
    """The customer answered and no agent was there in time: the call is abandoned."""
    await session_handle(client, workflow_id).signal(ABANDONED_SIGNAL, event)


async def session_view(client: Client, workflow_id: str) -> CallSessionView:
    view: CallSessionView = await session_handle(client, workflow_id).query(VIEW_QUERY, result_type=CallSessionView)
    return view
