"""``CallActivities.check_call``: what the carrier says of a session's call, through the real twilio SDK
against the Twilio emulator, in the shape of the status callback the session would have had. Nothing
here receives the call's webhooks (``public_base_url`` is a port nobody listens on): as for a session
whose callbacks were lost, the carrier is the only one who knows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.calls import CallActivities
from devstack.twilio_emulator.client import EmulatorClient
from dialler.calls.messages import CallStatusEvent, CheckCallInput
from dialler.integrations.twilio import TwilioTelephony
from dialler.runtime import Stores
from tests.support.telephony import Receiver

CUSTOMER = "+447700900123"
SESSION = "5b0c8f2e-7d0a-4c47-9a43-0f2d6c1e8a11"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Serves the TwiML the answered call runs (a long pause: the call stays live until hung up)."""
    receiver = Receiver().start()
    receiver.reset()
    receiver.twiml["hold"] = '<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="60"/></Response>'
    yield receiver
    receiver.stop()


async def place(telephony: TwilioTelephony, stores: Stores, receiver: Receiver, key: str) -> str:
    return await telephony.place_call(
        to=CUSTOMER,
        from_=stores.settings.caller_id,
        twiml_url=f"{receiver.url}/twiml/hold",
        status_callback=f"{stores.settings.public_base_url}/api/v1/webhooks/twilio/voice-status?wf=call-1",
        machine_detection=False,
        idempotency_key=key,
    )


async def check(activities: CallActivities, call_sid: str) -> CallStatusEvent | None:
    result: CallStatusEvent | None = await ActivityEnvironment().run(
        activities.check_call, CheckCallInput(SESSION, call_sid)
    )
    return result


async def test_a_call_is_seen_ringing_answered_and_completed_as_its_callbacks_would_say(
    stores: Stores,
    telephony: TwilioTelephony,
    emulator: EmulatorClient,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.script(CUSTOMER, behaviour="answer", answer_after_s=1.0, hangup_after_s=None)
    sid = await place(telephony, stores, receiver, "call-1:answered:dial")
    activities = CallActivities(stores, telephony)
    caplog.set_level(logging.DEBUG)

    ringing = await check(activities, sid)
    assert ringing is not None and ringing.call_sid == sid and ringing.status in {"queued", "ringing"}
    await asyncio.to_thread(emulator.wait_for, sid, "answered", 10.0)
    live = await check(activities, sid)
    assert live == CallStatusEvent(call_sid=sid, status="in-progress", duration_s=None, answered_by=None)
    assert await check(activities, sid) == live  # a read: asking again changes nothing

    await asyncio.sleep(1.0)
    await asyncio.to_thread(emulator.customer_hangup, sid)
    await asyncio.to_thread(emulator.wait_ended, sid, 10.0)
    ended = await check(activities, sid)
    assert ended is not None and ended.status == "completed" and (ended.duration_s or 0) >= 1

    # Only reads reached the carrier after the dial: nothing was changed by asking.
    assert len(emulator.requests(f"/Calls/{sid}.json", method="GET")) == 4
    assert emulator.requests(f"/Calls/{sid}.json", method="POST") == []
    # The logs name the call and the session, never the customer's number (whole or in part).
    assert sid in caplog.text and SESSION in caplog.text
    assert CUSTOMER not in caplog.text and CUSTOMER[-6:] not in caplog.text


@pytest.mark.parametrize(("behaviour", "status"), [("busy", "busy"), ("no-answer", "no-answer"), ("failed", "failed")])
async def test_a_call_that_was_never_answered_is_seen_with_its_final_status(
    stores: Stores,
    telephony: TwilioTelephony,
    emulator: EmulatorClient,
    receiver: Receiver,
    behaviour: str,
    status: str,
) -> None:
    emulator.script(CUSTOMER, behaviour=behaviour, answer_after_s=0.2)
    sid = await place(telephony, stores, receiver, f"call-1:{behaviour}:dial")
    await asyncio.to_thread(emulator.wait_ended, sid, 10.0)

    seen = await check(CallActivities(stores, telephony), sid)

    assert seen == CallStatusEvent(call_sid=sid, status=status, duration_s=0, answered_by=None)


async def test_a_call_the_carrier_does_not_know_is_none(stores: Stores, telephony: TwilioTelephony) -> None:
    assert await check(CallActivities(stores, telephony), "CA" + "0" * 32) is None


async def test_a_carrier_that_cannot_answer_is_a_retryable_failure(
    stores: Stores, telephony: TwilioTelephony, emulator: EmulatorClient, receiver: Receiver
) -> None:
    sid = await place(telephony, stores, receiver, "call-1:outage:dial")
    activities = CallActivities(stores, telephony)

    emulator.fail_next(1, status=503, code=20503, message="Service Unavailable")
    with pytest.raises(ApplicationError) as outage:
        await check(activities, sid)
    assert outage.value.type == "TelephonyUnavailable" and not outage.value.non_retryable

    emulator.fail_next(1, status=401, code=20003, message="Authenticate")
    with pytest.raises(ApplicationError) as refused:
        await check(activities, sid)
    assert refused.value.non_retryable  # bad credentials: retrying cannot help
    assert await check(activities, sid) is not None  # the next check finds it again
