"""CallSessionWorkflow asking the carrier for a call whose status callbacks were lost, with its
activities replaced by same-named stubs (the activity itself: tests/activities/test_check_call.py;
the whole product with the API down: tests/e2e/test_lost_status_callbacks.py): a carrier that cannot
answer is asked again at the next check and the session carries on; a call still ringing is left to
ring; a hang-up whose confirmation is lost ends on the carrier's final status, not on a guess; a status
callback that does arrive is what the session goes by."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from dialler.calls.messages import (
    CallSessionInput,
    CallStatusEvent,
    DialRequest,
    FinishInput,
    OutcomeInput,
)
from tests.support.call_session_stubs import StubbedSession, stubs
from tests.support.live_api import eventually
from tests.support.stubbed_worker import stubbed_worker
from workflows.call_session import CallSessionWorkflow

AGENT, USER, CALL = 7, 42, "CA" + "42" * 16


@pytest.fixture
def carrier() -> StubbedSession:
    return StubbedSession(call_sid=CALL)


@pytest_asyncio.fixture
async def task_queue(temporal_client: Client, carrier: StubbedSession) -> AsyncIterator[str]:
    async with stubbed_worker(temporal_client, CallSessionWorkflow, stubs(carrier), name="carrier-check") as queue:
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


async def closes(handle: WorkflowHandle[Any, Any], carrier: StubbedSession, disposition: str) -> FinishInput:
    await handle.execute_update(
        CallSessionWorkflow.submit_outcome, OutcomeInput(agent_id=AGENT, disposition=disposition)
    )
    await handle.result()
    [finished] = carrier.finished
    return finished


async def test_a_carrier_that_cannot_answer_is_asked_again_and_a_ringing_call_is_left_to_ring(
    temporal_client: Client, task_queue: str, carrier: StubbedSession
) -> None:
    outage = ApplicationError("fetch call: Twilio could not be reached", type="TelephonyUnavailable")
    carrier.carrier_answers = [outage, outage, outage, status("ringing"), status("busy")]
    handle = await dialled(temporal_client, task_queue, after_s=1, every_s=1)

    await until(lambda: "wrap_up" in carrier.states())
    assert carrier.asked == 5  # three tries of the first check (its retries), then one per check
    # The end is written with the wrap-up that follows it (LEAN_SESSION_PATCH): one write, ended_at and all.
    assert carrier.states() == ["dialing", "ringing", "wrap_up"]
    wrap_up = carrier.of("record_progress")[-1]
    assert (wrap_up.ended, wrap_up.end_reason) == (True, "busy")
    finished = await closes(handle, carrier, "busy")
    assert (finished.end_reason, finished.answered) == ("busy", False)


async def test_a_hang_up_whose_confirmation_is_lost_ends_on_the_carriers_final_status(
    temporal_client: Client, task_queue: str, carrier: StubbedSession
) -> None:
    """The answer's callback was lost too: the session saw only ringing. After the hang-up's grace
    the carrier says the call was completed with a duration, so it was answered (the guess without
    the carrier would have been an unanswered, canceled call)."""
    carrier.carrier_answers = [status("completed", duration_s=9)]
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
    temporal_client: Client, task_queue: str, carrier: StubbedSession
) -> None:
    carrier.carrier_answers = [status("in-progress")]
    handle = await dialled(temporal_client, task_queue, after_s=1, every_s=1)

    await until(lambda: carrier.asked >= 2)  # answered, says the carrier: the call goes on
    assert carrier.states() == ["dialing", "in_progress"]
    await handle.signal(CallSessionWorkflow.call_status, status("completed", duration_s=30))
    await until(lambda: "wrap_up" in carrier.states())
    finished = await closes(handle, carrier, "docs_promised")
    assert (finished.end_reason, finished.answered) == ("completed", True)
