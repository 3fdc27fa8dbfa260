"""Starting, stopping and reading a queue's PacingWorkflow from outside it (the supervisors' API).

The id, task queue and id policies live here, once; the workflow, its signals and query are named by
string (see workflows/callback_client.py for why); tests/workflows/test_pacing.py keeps the names in
step with PacingWorkflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from dialler.config import Settings
from dialler.pacing.messages import PacingInput, PacingStatus, pacing_workflow_id

WORKFLOW = "PacingWorkflow"
STOP_SIGNAL = "stop"
SETTINGS_CHANGED_SIGNAL = "settings_changed"
STATUS_QUERY = "status"


def pacing_input(settings: Settings, queue: str, agent_id: int | None) -> PacingInput:
    """The pacer's input from the settings: the tick and timeouts (short in tests), the first margin."""
    return PacingInput(
        queue=queue,
        tick_s=settings.pacing_tick_s,
        activity_timeout_s=settings.pacing_activity_timeout_s,
        ticks_per_run=settings.pacing_ticks_per_run,
        margin=settings.pacing_margin_start,
        margin_every_s=settings.pacing_margin_every_s,
        started_by_agent_id=agent_id,
    )


async def start_pacing(client: Client, *, task_queue: str, input: PacingInput) -> bool:
    """Start the queue's pacer; False if it was already running (then it is left as it is)."""
    workflow_id = pacing_workflow_id(input.queue)
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
        if described.status == WorkflowExecutionStatus.RUNNING:
            return False
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    await client.start_workflow(
        WORKFLOW,
        input,
        id=workflow_id,
        task_queue=task_queue,
        # Two supervisors pressing start at once: one pacer.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return True


async def stop_pacing(client: Client, queue: str) -> bool:
    """Ask the queue's pacer to stop; False when none was running."""
    try:
        await client.get_workflow_handle(pacing_workflow_id(queue)).signal(STOP_SIGNAL)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def settings_changed(client: Client, queue: str) -> None:
    """Tell a running pacer its queue's settings changed (nothing when none runs)."""
    try:
        await client.get_workflow_handle(pacing_workflow_id(queue)).signal(SETTINGS_CHANGED_SIGNAL)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise


async def pacer_running(client: Client, queue: str, *, rpc_timeout: timedelta | None = None) -> bool:
    """Whether the queue's pacer runs, as Temporal's server records it (no worker needed to answer)."""
    try:
        described = await client.get_workflow_handle(pacing_workflow_id(queue)).describe(rpc_timeout=rpc_timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


async def pacing_status(client: Client, queue: str, *, rpc_timeout: timedelta | None = None) -> PacingStatus | None:
    """The running pacer's last decision, or None when the queue has no pacer running."""
    handle = client.get_workflow_handle(pacing_workflow_id(queue))
    try:
        described = await handle.describe(rpc_timeout=rpc_timeout)
        if described.status != WorkflowExecutionStatus.RUNNING:
            return None
        status: PacingStatus = await handle.query(STATUS_QUERY, result_type=PacingStatus, rpc_timeout=rpc_timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return status
