"""What Temporal stores is ciphertext: a callback cancelled with a reason quoting the customer's phone
and name leaves neither in its history as read by a client without the codec (what the Temporal UI
or ``temporal workflow show`` shows anyone); the processes' client reads it back; the encrypted history
replays, and so do the histories recorded before encryption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker

from devstack.demo import ensure_demo_accounts
from devstack.seed import seed_replica
from dialler.callbacks.messages import BookCallbackInput, CallbackTimings, CancelInput, callback_workflow_id
from dialler.callbacks.rules import calling_hours
from dialler.config import Settings
from dialler.runtime import Stores, connect_temporal
from dialler.security.codec import data_converter
from tests.support.live_api import eventually
from workflows.call_session import CallSessionWorkflow
from workflows.callback import CallbackWorkflow
from workflows.inbound_sms import InboundSmsWorkflow

HISTORIES = Path(__file__).parent / "histories"
PHONE, NAME = "07700 900123", "Philippa Tregothnan"
REASON = f"{NAME} asked us not to ring {PHONE} today"


async def test_a_history_holds_no_plaintext_and_the_codec_reads_it(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=5, seed=5)
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)  # agent 1 books
    user_id = 3
    handle = await temporal_client.start_workflow(
        CallbackWorkflow.run,
        BookCallbackInput(
            user_id=user_id,
            due_at=datetime.now(UTC) + timedelta(hours=1),
            booked_by_agent_id=1,
            hours=calling_hours(stores.settings),
            timings=CallbackTimings(grace_s=600, expiry_s=7200, rebook_missed=False),
        ),
        id=callback_workflow_id(user_id),
        task_queue=stores.settings.temporal_task_queue,
    )
    await handle.signal(CallbackWorkflow.cancel, CancelInput(REASON))
    assert await handle.result() == "cancelled"

    raw = await Client.connect(stores.settings.temporal_address, namespace=stores.settings.temporal_namespace)
    raw_history = await raw.get_workflow_handle(handle.id).fetch_history()
    as_bytes = b"".join(e.SerializeToString() for e in raw_history.events)
    as_json = raw_history.to_json()
    for secret in (PHONE, NAME, "not to ring"):
        assert secret.encode() not in as_bytes and secret not in as_json
    assert b"binary/encrypted" in as_bytes and b"encryption-key-id" in as_bytes
    # Search attributes stay plain ids and codes: filtering in the UI still works.
    query = (
        f"TaskQueue = '{stores.settings.temporal_task_queue}' AND UserId = '{user_id}' AND CallbackStatus = 'cancelled'"
    )

    async def found_by_filter() -> bool:
        return (await raw.count_workflows(query)).count == 1

    await eventually(found_by_filter, within=10)

    # The processes' client (connect_temporal: the worker's, the API's, the CLI's) decodes.
    ours = await connect_temporal(stores.settings)
    view = await ours.get_workflow_handle(handle.id).query(CallbackWorkflow.view)
    assert any(REASON in line for line in view.history)

    history = await ours.get_workflow_handle(handle.id).fetch_history()
    replayed = await Replayer(
        workflows=[CallbackWorkflow], data_converter=data_converter(stores.settings)
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure


@pytest.mark.parametrize(
    ("workflow", "name", "workflow_id"),
    [
        (CallSessionWorkflow, "call-session-old-answered", "call-34"),
        (CallSessionWorkflow, "call-session-new-answered", "call-34"),
        (CallbackWorkflow, "callback-old-rescheduled-cancelled", "callback-2"),
        (CallbackWorkflow, "callback-new-missed", "callback-1"),
        (InboundSmsWorkflow, "inbound-sms-stop", "inbound-sms-stop"),
    ],
)
async def test_histories_recorded_before_encryption_replay_with_the_codec(
    workflow: type, name: str, workflow_id: str
) -> None:
    history = WorkflowHistory.from_json(workflow_id, (HISTORIES / f"{name}.json").read_text())
    converter = data_converter(Settings(_env_file=None))  # type: ignore[call-arg]
    result = await Replayer(workflows=[workflow], data_converter=converter).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure
