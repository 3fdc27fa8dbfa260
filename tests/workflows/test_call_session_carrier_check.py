"""CallSessionWorkflow asking the carrier for a call whose status callbacks were lost, with its
activities replaced by same-named stubs (the activity itself: tests/activities/test_check_call.py;
the whole product with the API down: tests/e2e/test_lost_status_callbacks.py): a carrier that cannot
answer is asked again at the next check and the session carries on; a call still ringing is left to
ring; a hang-up whose confirmation is lost ends on the carrier's final status, not on a guess; a status
callback that does arrive is what the session goes by."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from dialler.calls.messages import (
    CallSessionInput,
    CallStatusEvent,
    CheckCallInput,
    DialRequest,
    FinishInput,
    FinishResult,
    FollowUp,
    FollowUpInput,
    OpenSessionInput,
    OutcomeInput,
    PlaceCallInput,
    ReceivedOutcomeRead,
    RenewLeaseInput,
    SessionProgress,
    TakeReceivedInput,
)
from tests.support.live_api import eventually
from workflows.call_session import CallSessionWorkflow

AGENT, USER, CALL = 7, 42, "CA" + "42" * 16


@dataclass
class Carrier:
    """What the stubbed carrier answers to each check, in turn (the last one for ever after); an
    ``ApplicationError`` is raised. ``asked`` and ``progress`` record what the session did."""

    answers: list[CallStatusEvent | ApplicationError] = field(default_factory=list)
    asked: int = 0
    progress: list[SessionProgress] = field(default_factory=list)
    finished: list[FinishInput] = field(default_factory=list)

    def states(self) -> list[str]:
        return [p.state for p in self.progress]


def stubs(carrier: Carrier) -> list[Any]:
    @activity.defn(name="open_session")
    async def open_session(input: OpenSessionInput) -> None:
        pass

    @activity.defn(name="place_call")
    async def place_call(input: PlaceCallInput) -> str:
        return CALL

    @activity.defn(name="record_progress")
    async def record_progress(input: SessionProgress) -> None:
        carrier.progress.append(input)

    @activity.defn(name="renew_lease")
    async def renew_lease(input: RenewLeaseInput) -> bool:
        return True

    @activity.defn(name="hangup")
    async def hangup(call_sid: str) -> None:
        pass  # the carrier hangs up; its confirmation is what may be lost

    @activity.defn(name="check_call")
    async def check_call(input: CheckCallInput) -> CallStatusEvent | None:
        assert input.call_sid == CALL
        answer = carrier.answers[min(carrier.asked, len(carrier.answers) - 1)]
        carrier.asked += 1
        if isinstance(answer, ApplicationError):
            raise answer
        return answer

    @activity.defn(name="take_received_outcome")
    async def take_received_outcome(input: TakeReceivedInput) -> ReceivedOutcomeRead | None:
        return None

    @activity.defn(name="finish_session")
    async def finish_session(input: FinishInput) -> FinishResult:
        carrier.finished.append(input)
        return FinishResult(requeued=True)

    @activity.defn(name="plan_follow_up")
    async def plan_follow_up(input: FollowUpInput) -> FollowUp | None:
        return None

    return [
        open_session,
        place_call,
        record_progress,
        renew_lease,
        hangup,
        check_call,
        take_received_outcome,
        finish_session,
        plan_follow_up,
    ]


@pytest.fixture
def carrier() -> Carrier:
    return Carrier()


@pytest_asyncio.fixture
async def task_queue(temporal_client: Client, carrier: Carrier) -> AsyncIterator[str]:
    queue = f"carrier-check-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[CallSessionWorkflow], activities=stubs(carrier)):
        yield queue


async def dialled(client: Client, task_queue: str, *, after_s: int, every_s: int) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(
        CallSessionWorkflow.run,
        CallSessionInput(
            session_id=str(uuid.uuid4()),
            user_id=USER,
            agent_id=AGENT,
            queue="unsigned",
            lease_token=1,
            wrap_up_timeout_s=30,
            lease_renew_every_s=5,
            carrier_check_after_s=after_s,
            carrier_check_every_s=every_s,
        ),
        id=f"call-check-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    await handle.signal(CallSessionWorkflow.dial, DialRequest(agent_id=AGENT))
    return handle


def status(value: str, duration_s: int | None = None) -> CallStatusEvent:
    return CallStatusEvent(call_sid=CALL, status=value, duration_s=duration_s)


async def until(predicate: Callable[[], bool]) -> None:
    async def check() -> bool:
        return predicate()

    await eventually(check, within=30)


async def closes(handle: WorkflowHandle[Any, Any], carrier: Carrier, disposition: str) -> FinishInput:
    await handle.execute_update(
        CallSessionWorkflow.submit_outcome, OutcomeInput(agent_id=AGENT, disposition=disposition)
    )
    await handle.result()
    [finished] = carrier.finished
    return finished


async def test_a_carrier_that_cannot_answer_is_asked_again_and_a_ringing_call_is_left_to_ring(
    temporal_client: Client, task_queue: str, carrier: Carrier
) -> None:
    outage = ApplicationError("fetch call: Twilio could not be reached", type="TelephonyUnavailable")
    carrier.answers = [outage, outage, outage, status("ringing"), status("busy")]
    handle = await dialled(temporal_client, task_queue, after_s=1, every_s=1)

    await until(lambda: "wrap_up" in carrier.states())
    assert carrier.asked == 5  # three tries of the first check (its retries), then one per check
    assert carrier.states() == ["dialing", "ringing", "ended", "wrap_up"]
    finished = await closes(handle, carrier, "busy")
    assert (finished.end_reason, finished.answered) == ("busy", False)


async def test_a_hang_up_whose_confirmation_is_lost_ends_on_the_carriers_final_status(
    temporal_client: Client, task_queue: str, carrier: Carrier
) -> None:
    """The answer's callback was lost too: the session saw only ringing. After the hang-up's grace
    the carrier says the call was completed with a duration, so it was answered (the guess without
    the carrier would have been an unanswered, canceled call)."""
    carrier.answers = [status("completed", duration_s=9)]
    handle = await dialled(temporal_client, task_queue, after_s=600, every_s=600)
    await until(lambda: "dialing" in carrier.states())  # the call is placed: its callbacks can come
    await handle.signal(CallSessionWorkflow.call_status, status("ringing"))
    await until(lambda: "ringing" in carrier.states())
    await handle.signal(CallSessionWorkflow.hang_up)

    await until(lambda: "wrap_up" in carrier.states())  # after HANGUP_GRACE (15 s)
    assert carrier.asked == 1
    finished = await closes(handle, carrier, "not_interested")
    assert (finished.end_reason, finished.answered) == ("completed", True)


async def test_a_status_callback_that_arrives_is_what_the_session_goes_by(
    temporal_client: Client, task_queue: str, carrier: Carrier
) -> None:
    carrier.answers = [status("in-progress")]
    handle = await dialled(temporal_client, task_queue, after_s=1, every_s=1)

    await until(lambda: carrier.asked >= 2)  # answered, says the carrier: the call goes on
    assert carrier.states() == ["dialing", "in_progress"]
    await handle.signal(CallSessionWorkflow.call_status, status("completed", duration_s=30))
    await until(lambda: "wrap_up" in carrier.states())
    finished = await closes(handle, carrier, "docs_promised")
    assert (finished.end_reason, finished.answered) == ("completed", True)
