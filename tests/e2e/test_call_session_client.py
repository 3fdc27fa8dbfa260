"""The call-session client drives a real session on the real worker: start (once per customer),
dial, the view, hang up and the outcome, all by the names it gives the workflow's handlers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.demo import ensure_demo_accounts
from dialler.calls.messages import CallSessionInput, DialRequest, OutcomeInput, call_workflow_id
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer
from tests.support.live_api import eventually
from workflows import call_session_client

pytestmark = pytest.mark.e2e
TIMEOUT = timedelta(seconds=10)


async def test_a_session_started_and_driven_through_the_client_records_the_outcome(
    live_api: str, temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)
    engine = queue_engine(stores)
    lease = await engine.next_call(
        agent_id=1, queues=["unsigned"], trained_vulnerable=True, now=datetime.now(UTC).timestamp()
    )
    assert lease is not None
    session_id = str(uuid.uuid4())
    task_queue = stores.settings.temporal_task_queue
    start = call_session_client.CallSessionStarter(temporal_client, task_queue)
    workflow_id = call_workflow_id(lease.user_id)

    assert await start(CallSessionInput(session_id, lease.user_id, 1, lease.queue, lease.token))
    # One open session per customer: a second start is refused, not a second call.
    assert not await start(CallSessionInput(str(uuid.uuid4()), lease.user_id, 2, lease.queue, lease.token))

    await call_session_client.dial(temporal_client, workflow_id, DialRequest(agent_id=1))

    async def state() -> str:
        return (await call_session_client.session_view(temporal_client, workflow_id, rpc_timeout=TIMEOUT)).state

    # Dial → placed → ringing → answered, and hang-up → completed, each cross the worker, the Twilio
    # emulator's process and the live API; under a loaded machine (CI) each has taken over 15 s.
    await eventually(lambda: _is(state, "in_progress"), within=45)
    await call_session_client.hang_up(temporal_client, workflow_id)
    await eventually(lambda: _is(state, "wrap_up"), within=45)
    accepted = await call_session_client.submit_outcome(
        temporal_client, workflow_id, OutcomeInput(agent_id=1, disposition="busy"), rpc_timeout=TIMEOUT
    )

    assert (accepted.session_id, accepted.disposition) == (session_id, "busy")
    result = await temporal_client.get_workflow_handle(workflow_id).result()  # untyped: a dict
    assert result["disposition"] == "busy"
    assert await engine.lease_of(lease.user_id) is None


async def _is(read, wanted: str) -> bool:  # type: ignore[no-untyped-def]
    return await read() == wanted
