"""InboundCallWorkflow's orchestration, with its activities replaced by same-named stubs that record
what they were asked (the activities themselves run end to end in tests/e2e/test_returned_calls.py):
the agent held while it rings and freed when it rings out; a session only for a known customer who
was answered; presence on_call → wrap_up → available; the hang-up reaching the caller's leg; the
outcome validated as a returned call's (no dial outcomes) and finished as contact, not an attempt; no
outcome in time is no_outcome; statuses repeated, late or of another leg change nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from dialler.calls.messages import (
    CallStatusEvent,
    FinishInput,
    FinishResult,
    FollowUp,
    FollowUpInput,
    OutcomeInput,
    PresenceInput,
)
from dialler.calls.returned import (
    InboundCallInput,
    OpenReturnedSession,
    ReturnedCallStep,
    inbound_call_workflow_id,
    returned_session_id,
)
from tests.support.live_api import eventually
from tests.support.stubbed_worker import stubbed_worker
from workflows.inbound_call import InboundCallWorkflow

AGENT, USER = 7, 42


@dataclass
class Recorded:
    """What the stubs were asked, in order; ``session_is_ours`` is what opening the session answers."""

    session_is_ours: bool = True
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def presence(self) -> list[str]:
        return [arg.state for name, arg in self.calls if name == "set_presence"]

    def of(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]


def stubs(recorded: Recorded) -> list[Any]:
    @activity.defn(name="set_presence")
    async def set_presence(input: PresenceInput) -> None:
        recorded.calls.append(("set_presence", input))

    @activity.defn(name="open_returned_session")
    async def open_returned_session(input: OpenReturnedSession) -> bool:
        recorded.calls.append(("open_returned_session", input))
        return recorded.session_is_ours

    @activity.defn(name="record_returned_step")
    async def record_returned_step(input: ReturnedCallStep) -> None:
        recorded.calls.append(("record_returned_step", input))

    @activity.defn(name="hangup")
    async def hangup(call_sid: str) -> None:
        recorded.calls.append(("hangup", call_sid))

    @activity.defn(name="finish_session")
    async def finish_session(input: FinishInput) -> FinishResult:
        recorded.calls.append(("finish_session", input))
        return FinishResult(requeued=True)

    @activity.defn(name="plan_follow_up")
    async def plan_follow_up(input: FollowUpInput) -> FollowUp | None:
        recorded.calls.append(("plan_follow_up", input))
        return None  # nothing pending to upload: no text (the texts themselves: tests/workflows/test_magic_link.py)

    return [set_presence, open_returned_session, record_returned_step, hangup, finish_session, plan_follow_up]


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest_asyncio.fixture
async def task_queue(temporal_client: Client, recorded: Recorded) -> AsyncIterator[str]:
    async with stubbed_worker(temporal_client, InboundCallWorkflow, stubs(recorded), name="inbound-call") as queue:
        yield queue


async def ring(client: Client, task_queue: str, *, user_id: int | None = USER, wrap_up_s: int = 300) -> WorkflowHandle:
    call_sid = f"CA{uuid.uuid4().hex}"
    return await client.start_workflow(
        InboundCallWorkflow.run,
        InboundCallInput(
            call_sid=call_sid,
            session_id=returned_session_id(call_sid),
            agent_id=AGENT,
            user_id=user_id,
            routing="routed_last_agent",
            received_at=datetime.now(UTC),
            wrap_up_timeout_s=wrap_up_s,
        ),
        id=inbound_call_workflow_id(call_sid),
        task_queue=task_queue,
    )


async def status(handle: WorkflowHandle, status: str, leg: str = "CAagent") -> None:
    await handle.signal(InboundCallWorkflow.call_status, CallStatusEvent(call_sid=leg, status=status))


async def until(recorded: Recorded, name: str, count: int = 1) -> None:
    async def seen() -> bool:
        return len(recorded.of(name)) >= count

    await eventually(seen, within=15)


async def state(handle: WorkflowHandle) -> str:
    return (await handle.query(InboundCallWorkflow.view)).state


async def test_a_ring_nobody_answers_holds_the_agent_then_frees_them_with_no_session(
    temporal_client: Client, task_queue: str, recorded: Recorded
) -> None:
    handle = await ring(temporal_client, task_queue)
    await status(handle, "ringing")
    await status(handle, "no-answer")
    assert await handle.result() is None
    assert recorded.presence() == ["reserved", "available"]
    assert "open_returned_session" not in recorded.names() and "finish_session" not in recorded.names()
    [ended] = recorded.of("record_returned_step")
    assert (ended.state, ended.session_id, ended.end_reason) == ("ended", None, "no_answer")


async def test_an_answered_returned_call_is_a_session_closed_with_an_outcome_counted_as_contact(
    temporal_client: Client, task_queue: str, recorded: Recorded
) -> None:
    handle = await ring(temporal_client, task_queue)
    await status(handle, "ringing")
    await status(handle, "in-progress")
    await until(recorded, "set_presence", 2)
    [opened] = recorded.of("open_returned_session")
    assert (opened.user_id, opened.agent_id, opened.workflow_id) == (USER, AGENT, handle.id)
    assert await state(handle) == "in_progress"
    with pytest.raises(WorkflowUpdateFailedError) as live:
        await handle.execute_update(InboundCallWorkflow.submit_outcome, OutcomeInput(AGENT, "not_interested"))
    assert isinstance(live.value.cause, ApplicationError) and live.value.cause.type == "CallInProgress"

    # The agent hangs up: the caller's leg is ended; the agent leg's end then closes the call.
    await handle.signal(InboundCallWorkflow.hang_up)
    await until(recorded, "hangup")
    assert recorded.of("hangup") == [handle.id.removeprefix("inbound-call-")]
    await status(handle, "completed", leg="CAsomeone-else")  # another leg's status: ignored
    assert await state(handle) == "in_progress"
    await status(handle, "completed")
    await until(recorded, "set_presence", 3)
    assert await state(handle) == "wrap_up"
    await status(handle, "in-progress")  # late and out of order: changes nothing

    for refused, why in [
        (OutcomeInput(AGENT, "no_answer"), "InvalidOutcome"),  # describes a call we placed
        (OutcomeInput(AGENT + 1, "not_interested"), "NotYourCall"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await handle.execute_update(InboundCallWorkflow.submit_outcome, refused)
        assert isinstance(failed.value.cause, ApplicationError) and failed.value.cause.type == why
    accepted = await handle.execute_update(
        InboundCallWorkflow.submit_outcome, OutcomeInput(AGENT, "docs_promised", notes="will post them")
    )
    assert accepted.disposition == "docs_promised"
    result = await handle.result()
    assert result is not None and result.disposition == "docs_promised"

    assert recorded.presence() == ["reserved", "on_call", "wrap_up"]  # finish_session makes them available
    [finish] = recorded.of("finish_session")
    assert finish.returned_call and finish.answered and not finish.abandoned
    assert (finish.user_id, finish.agent_id, finish.disposition, finish.notes) == (
        USER,
        AGENT,
        "docs_promised",
        "will post them",
    )
    # Documents promised: the upload link is planned, as after any call.
    assert [(f.user_id, f.kind) for f in recorded.of("plan_follow_up")] == [(USER, "upload_link")]
    steps = [(s.state, s.session_id) for s in recorded.of("record_returned_step")]
    assert steps == [(s, opened.session_id) for s in ("in_progress", "ended", "wrap_up")]
    description = await handle.describe()
    attributes = {k: v for k, v in description.search_attributes.items()}
    assert attributes["QueueType"] == ["inbound"] and attributes["Disposition"] == ["docs_promised"]
    assert attributes["AgentId"] == [str(AGENT)] and attributes["UserId"] == [str(USER)]


async def test_no_outcome_within_the_wrap_up_is_recorded_as_no_outcome(
    temporal_client: Client, task_queue: str, recorded: Recorded
) -> None:
    handle = await ring(temporal_client, task_queue, wrap_up_s=1)
    await status(handle, "in-progress")
    await status(handle, "completed")
    result = await handle.result()
    assert result is not None and result.disposition == "no_outcome"
    [finish] = recorded.of("finish_session")
    assert finish.disposition == "no_outcome" and finish.returned_call


@pytest.mark.parametrize("user_id", [None, USER])
async def test_a_call_with_no_session_of_its_own_frees_the_agent_with_no_outcome(
    temporal_client: Client, task_queue: str, recorded: Recorded, user_id: int | None
) -> None:
    """An unknown number (None), or a customer a colleague holds in an open session (the open finds
    theirs): the conversation happens, and nothing is recorded against a session that is not ours."""
    recorded.session_is_ours = False
    handle = await ring(temporal_client, task_queue, user_id=user_id)
    await status(handle, "in-progress")
    await until(recorded, "set_presence", 2)
    await status(handle, "completed")
    assert await handle.result() is None
    assert recorded.presence() == ["reserved", "on_call", "wrap_up", "available"]
    assert "finish_session" not in recorded.names()
    assert len(recorded.of("open_returned_session")) == (0 if user_id is None else 1)
