"""CallSessionWorkflow's pooled calls (``POOLED_CALL_PATCH``: predictive calls the queue's pacer
places with no agent), with its activities replaced by same-named stubs that record what they were
asked (the real path, webhooks and claim included, runs in tests/e2e/test_pacing_predictive.py): no
agent's presence moves while it rings; the agent the answer claimed takes the call (AgentId, on_call,
their outcome); a claim whose signal was lost is read from the session's row; a pooled call nobody
answered closes at once with no wrap-up and no agent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from dialler.calls.messages import (
    AgentClaimed,
    CallSessionInput,
    CallStatusEvent,
    OutcomeInput,
)
from tests.support.call_session_stubs import StubbedSession, stubs
from tests.support.live_api import eventually
from tests.support.stubbed_worker import stubbed_worker
from workflows.call_session import CallSessionWorkflow

POOL_ID, AGENT, USER, SID = -41, 7, 4242, "CApooled"


@pytest.fixture
def recorded() -> StubbedSession:
    return StubbedSession(call_sid=SID)


@pytest_asyncio.fixture
async def task_queue(temporal_client: Client, recorded: StubbedSession) -> AsyncIterator[str]:
    async with stubbed_worker(temporal_client, CallSessionWorkflow, stubs(recorded), name="pooled") as queue:
        yield queue


async def pooled_call(client: Client, task_queue: str) -> WorkflowHandle:
    """A pooled session started, once it has dialled (the carrier's statuses come after the dial)."""
    handle = await client.start_workflow(
        CallSessionWorkflow.run,
        CallSessionInput(
            session_id=str(uuid.uuid4()),
            user_id=USER,
            agent_id=POOL_ID,
            queue="unsigned",
            lease_token=9,
            progressive=True,
            pooled=True,
            wrap_up_timeout_s=60,
        ),
        id=f"call-{USER}-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
    )

    async def dialled() -> bool:
        view = await handle.query(CallSessionWorkflow.view)
        return view.state == "dialing" and view.call_sid == SID

    await eventually(dialled, within=15)
    return handle


async def status(handle: WorkflowHandle, value: str, duration_s: int | None = None) -> None:
    await handle.signal(CallSessionWorkflow.call_status, CallStatusEvent(SID, value, duration_s=duration_s))


async def state_is(handle: WorkflowHandle, state: str) -> None:
    async def reached() -> bool:
        return bool((await handle.query(CallSessionWorkflow.view)).state == state)

    await eventually(reached, within=15)


async def agent_ids_filed(handle: WorkflowHandle) -> list[str]:
    found: list[str] = []
    async for event in handle.fetch_history_events():
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if "AgentId" in fields:
                found.append(fields["AgentId"].data.decode().strip('"'))
    return found


async def test_the_agent_the_answer_claimed_takes_the_call(
    temporal_client: Client, task_queue: str, recorded: StubbedSession
) -> None:
    handle = await pooled_call(temporal_client, task_queue)
    await status(handle, "ringing")
    await state_is(handle, "ringing")
    assert recorded.presence() == []  # nobody is held while a pooled call rings
    await handle.signal(CallSessionWorkflow.agent_claimed, AgentClaimed(AGENT, SID))
    await status(handle, "in-progress")
    await state_is(handle, "in_progress")
    await eventually(lambda: _presence(recorded, (AGENT, "on_call")), within=15)
    await status(handle, "completed", duration_s=30)
    await state_is(handle, "wrap_up")
    assert (await handle.query(CallSessionWorkflow.view)).agent_id == AGENT
    accepted = await handle.execute_update(
        CallSessionWorkflow.submit_outcome, OutcomeInput(agent_id=AGENT, disposition="docs_promised")
    )
    assert accepted.disposition == "docs_promised"
    await handle.result()
    [finished] = recorded.of("finish_session")
    assert (finished.agent_id, finished.disposition, finished.answered) == (AGENT, "docs_promised", True)
    assert recorded.presence() == [(AGENT, "on_call"), (AGENT, "wrap_up")]
    assert recorded.of("claimed_agent") == []  # told by the signal: the row is not read
    assert await agent_ids_filed(handle) == [str(AGENT)]
    assert recorded.of("place_call")[0].agent_id == POOL_ID


async def test_a_claim_whose_signal_was_lost_is_read_from_the_row(
    temporal_client: Client, task_queue: str, recorded: StubbedSession
) -> None:
    recorded.claimed_on_row = AGENT
    handle = await pooled_call(temporal_client, task_queue)
    await status(handle, "in-progress")
    await status(handle, "completed", duration_s=20)
    await state_is(handle, "wrap_up")
    assert (await handle.query(CallSessionWorkflow.view)).agent_id == AGENT
    await handle.execute_update(
        CallSessionWorkflow.submit_outcome, OutcomeInput(agent_id=AGENT, disposition="not_interested")
    )
    await handle.result()
    assert [f.agent_id for f in recorded.of("finish_session")] == [AGENT]
    assert await agent_ids_filed(handle) == [str(AGENT)]


async def test_a_pooled_call_nobody_answered_closes_at_once_with_no_agent(
    temporal_client: Client, task_queue: str, recorded: StubbedSession
) -> None:
    handle = await pooled_call(temporal_client, task_queue)
    await status(handle, "ringing")
    await status(handle, "no-answer")
    result = await handle.result()  # no wrap-up: nobody had the call
    assert result.disposition == "no_outcome"
    [finished] = recorded.of("finish_session")
    assert (finished.agent_id, finished.end_reason, finished.answered) == (POOL_ID, "no_answer", False)
    assert recorded.presence() == []
    assert await agent_ids_filed(handle) == []


async def _presence(recorded: StubbedSession, expected: tuple[int, str]) -> bool:
    return expected in recorded.presence()
