"""Starting and talking to a customer's CallbackWorkflow from outside it (the API, activities).

The workflow's id, task queue and signal-with-start policy live here, once. This module imports
no workflow definition: it names the workflow, its signals and its update by string, so that the
API (which must not import activities) and the activities (which CallbackWorkflow imports) can both
use it without importing the workflow and, through it, the activities (tests/test_imports.py).
tests/workflows/test_clients.py keeps the names in step with CallbackWorkflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from dialler.callbacks.messages import (
    BookCallbackInput,
    CallbackView,
    CancelInput,
    CompleteInput,
    RescheduleInput,
    callback_workflow_id,
)
from dialler.callbacks.rules import callback_timings, calling_hours
from dialler.config import Settings

WORKFLOW = "CallbackWorkflow"
REBOOK_SIGNAL = "rebook"  # CallbackWorkflow.rebook; signal-with-start takes the signal by name
CANCEL_SIGNAL = "cancel"
COMPLETE_SIGNAL = "complete"
RESCHEDULE_UPDATE = "reschedule"


async def book_callback(client: Client, settings: Settings, booking: BookCallbackInput) -> WorkflowHandle:
    """Start the customer's callback, or move the live one to the new time (one live per customer)."""
    booking = BookCallbackInput(
        **{**booking.__dict__, "hours": calling_hours(settings), "timings": callback_timings(settings)}
    )
    # Signal-with-start: starts the customer's callback, or moves the live one, without waiting for a
    # worker (an API request must not hang while workers restart). The time was validated by the caller.
    return await client.start_workflow(
        WORKFLOW,
        booking,
        id=callback_workflow_id(booking.user_id),
        task_queue=settings.temporal_task_queue,
        start_signal=REBOOK_SIGNAL,
        start_signal_args=[RescheduleInput(booking.due_at, by_agent_id=booking.booked_by_agent_id)],
    )


def callback_handle(client: Client, user_id: int) -> WorkflowHandle:
    return client.get_workflow_handle(callback_workflow_id(user_id))


async def reschedule_callback(
    client: Client, user_id: int, request: RescheduleInput, *, rpc_timeout: timedelta
) -> CallbackView:
    """Move the live callback; the workflow validates the time (WorkflowUpdateFailedError if refused)."""
    return await callback_handle(client, user_id).execute_update(
        RESCHEDULE_UPDATE, request, result_type=CallbackView, rpc_timeout=rpc_timeout
    )


async def cancel_callback(client: Client, user_id: int, request: CancelInput) -> None:
    await callback_handle(client, user_id).signal(CANCEL_SIGNAL, request)


async def complete_callback(client: Client, user_id: int, request: CompleteInput) -> bool:
    """Tell the customer's live callback that a call settled it. False when it could not be told
    (none is live: not found or already closed; nothing to do)."""
    try:
        await callback_handle(client, user_id).signal(COMPLETE_SIGNAL, request)
    except RPCError:
        return False
    return True
