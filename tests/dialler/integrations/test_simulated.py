"""The simulated telephony mode, posting real signed HTTP webhooks to a real local receiver."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from dialler.config import Settings, TelephonyMode
from dialler.integrations.simulated import (
    CallOutcome,
    CallPlan,
    CallScript,
    SimulatedTelephony,
    SmsPlan,
    telephony_for,
)
from dialler.integrations.twilio import TelephonyError, TwilioTelephony
from dialler.integrations.twilio_voice import validate_signature
from tests.support.telephony import ACCOUNT_SID, CALLER_ID, Hook, Receiver, make_settings

FAST = CallPlan(initiated_s=0.01, ring_s=0.05, talk_s=5.0, amd_s=0.02, play_s=0.05)
ANSWERS = "+447700900121"


@pytest.fixture
def sim_settings(receiver: Receiver) -> Settings:
    return make_settings(telephony_mode=TelephonyMode.SIMULATED, public_base_url=receiver.url)


_open: list[SimulatedTelephony] = []


@pytest.fixture(autouse=True)
async def _close_simulators() -> AsyncIterator[None]:
    # A call still "talking" when its test ends would post into the next test's receiver.
    yield
    while _open:
        await _open.pop().aclose()


def _sim(settings: Settings, http: httpx.AsyncClient, script: CallScript | None = None) -> SimulatedTelephony:
    sim = SimulatedTelephony(settings, http, script or CallScript.standard(FAST))
    _open.append(sim)
    return sim


async def _place(
    sim: SimulatedTelephony,
    receiver: Receiver,
    to: str = ANSWERS,
    *,
    twiml: str = "bridge",
    key: str = "k1",
    amd: bool = False,
) -> str:
    return await sim.place_call(
        to=to,
        from_=CALLER_ID,
        twiml_url=f"{receiver.url}/twiml/{twiml}",
        status_callback=f"{receiver.url}/status?session=call-42",
        machine_detection=amd,
        idempotency_key=key,
    )


def _statuses(receiver: Receiver) -> list[str]:
    return [h.form["CallStatus"] for h in receiver.at("/status") if "CallStatus" in h.form]


def _assert_signed(settings: Settings, hooks: list[Hook]) -> None:
    for hook in hooks:
        assert validate_signature(settings, hook.url, hook.pairs, hook.signature), hook


async def test_an_answered_call_posts_signed_callbacks_in_order_until_hangup(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)
    sid = await _place(sim, receiver)

    await receiver.wait_for(lambda hooks: any(h.path == "/twiml/bridge" for h in hooks))
    await asyncio.sleep(0.1)
    assert not sim.calls[sid].ended.is_set()  # the TwiML has <Dial>: the line stays up
    await sim.hangup(sid)
    call = await sim.wait_ended(sid)

    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    assert _statuses(receiver) == ["ringing", "in-progress", "completed"]
    status_hooks = receiver.at("/status")
    assert [h.form["SequenceNumber"] for h in status_hooks] == ["0", "1", "2"]
    for hook in status_hooks:
        form = hook.form
        assert form["CallSid"] == sid and form["AccountSid"] == ACCOUNT_SID
        assert form["To"] == ANSWERS and form["From"] == CALLER_ID and form["Direction"] == "outbound-api"
        assert parsedate_to_datetime(form["Timestamp"]).tzinfo is not None
        assert hook.url == f"{receiver.url}/status?session=call-42"
    completed = status_hooks[-1].form
    assert int(completed["CallDuration"]) >= 1 and "AnsweredBy" not in completed
    # Twilio fetched the TwiML on answer with a signed POST, and every webhook is signed.
    [fetch] = receiver.at("/twiml/bridge")
    assert fetch.form["CallStatus"] == "in-progress"
    _assert_signed(sim_settings, receiver.hooks)
    assert call.status == "completed" and "<Dial" in call.twiml[0]
    assert len({h.idempotency_token for h in status_hooks}) == 3


async def test_a_retried_place_call_is_the_same_call(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)
    first = await _place(sim, receiver, key="call-42:dial")
    again = await _place(sim, receiver, key="call-42:dial")
    await receiver.wait_for(lambda hooks: "ringing" in _statuses(receiver))
    await sim.hangup(first)
    await sim.wait_ended(first)

    assert first == again
    assert _statuses(receiver).count("ringing") == 1
    # Deterministic across processes too: the sid depends only on the key.
    assert await _place(_sim(sim_settings, http), receiver, key="call-42:dial") == first


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+447700900127", ["ringing", "no-answer"]),
        ("+447700900128", ["busy"]),
    ],
)
async def test_the_standard_script_picks_outcomes_by_last_digit(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver, number: str, expected: list[str]
) -> None:
    sim = _sim(sim_settings, http, CallScript.standard(FAST))
    sim.script.by_last_digit["7"] = CallPlan(outcome=CallOutcome.NO_ANSWER, initiated_s=0.01, ring_s=0.05)
    sid = await _place(sim, receiver, to=number)

    call = await sim.wait_ended(sid)

    assert _statuses(receiver) == expected and call.status == expected[-1]
    assert receiver.at("/twiml/bridge") == []  # never answered, so no TwiML
    assert receiver.at("/status")[-1].form["CallDuration"] == "0"


async def test_an_override_wins_over_the_last_digit(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)
    sim.script.override(ANSWERS, CallPlan(outcome=CallOutcome.FAILED, initiated_s=0.01))

    call = await sim.wait_ended(await _place(sim, receiver))

    assert _statuses(receiver) == ["failed"] and call.status == "failed"


async def test_voicemail_with_amd_posts_the_verdict(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)
    number = "+447700900129"  # ...9: voicemail in the standard script
    sid = await _place(sim, receiver, to=number, amd=True)

    await receiver.wait_for(lambda hooks: any("AnsweredBy" in h.form for h in hooks))
    await sim.hangup(sid)
    await sim.wait_ended(sid)

    [verdict] = [h.form for h in receiver.at("/status") if "CallStatus" not in h.form]
    assert verdict["AnsweredBy"] == "machine_start" and verdict["CallSid"] == sid
    assert receiver.at("/status")[-1].form["AnsweredBy"] == "machine_start"
    _assert_signed(sim_settings, receiver.hooks)


async def test_twiml_without_dial_plays_and_the_call_ends_by_itself(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)

    call = await sim.wait_ended(await _place(sim, receiver, twiml="abandoned"))

    assert _statuses(receiver) == ["ringing", "in-progress", "completed"]
    assert "RMC Claims" in call.twiml[0] and "<Hangup" in call.twiml[0]


async def test_redirect_swaps_the_twiml_of_a_live_call(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)
    sid = await _place(sim, receiver)
    await receiver.wait_for(lambda hooks: any(h.path == "/twiml/bridge" for h in hooks))

    await sim.redirect(sid, twiml_url=f"{receiver.url}/twiml/abandoned")
    call = await sim.wait_ended(sid)

    assert [h.path for h in receiver.hooks if h.path.startswith("/twiml")] == [
        "/twiml/bridge",
        "/twiml/abandoned",
    ]
    assert call.status == "completed" and len(call.twiml) == 2
    with pytest.raises(TelephonyError) as info:
        await sim.redirect(sid, twiml_url=f"{receiver.url}/twiml/abandoned")
    assert info.value.code == 21220 and not info.value.is_retryable


async def test_a_failed_twiml_fetch_ends_the_call(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http)

    call = await sim.wait_ended(await _place(sim, receiver, twiml="missing"))

    assert call.status == "completed" and call.twiml == []


async def test_hangup_while_ringing_cancels(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http, CallScript(CallPlan(initiated_s=0.01, ring_s=5.0)))
    sid = await _place(sim, receiver)
    await receiver.wait_for(lambda hooks: "ringing" in _statuses(receiver))

    await sim.hangup(sid)
    call = await sim.wait_ended(sid)

    assert _statuses(receiver) == ["ringing", "canceled"] and call.duration_s == 0


async def test_the_customer_hangs_up_after_the_longest_talk(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http, CallScript(CallPlan(initiated_s=0.01, ring_s=0.02, talk_s=0.1)))

    call = await sim.wait_ended(await _place(sim, receiver))

    assert call.status == "completed" and _statuses(receiver)[-1] == "completed"


async def test_duplicate_callbacks_carry_the_same_idempotency_token(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(
        sim_settings,
        http,
        CallScript(CallPlan(initiated_s=0.01, ring_s=0.02, talk_s=0.05, duplicate_callbacks=True)),
    )

    call = await sim.wait_ended(await _place(sim, receiver))

    hooks = receiver.at("/status")
    assert _statuses(receiver) == [
        "ringing",
        "ringing",
        "in-progress",
        "in-progress",
        "completed",
        "completed",
    ]
    assert hooks[0].idempotency_token == hooks[1].idempotency_token != hooks[2].idempotency_token
    assert len(call.callbacks) == 3


async def test_unknown_calls(sim_settings: Settings, http: httpx.AsyncClient) -> None:
    sim = _sim(sim_settings, http)

    await sim.hangup("CA" + "0" * 32)  # logged, not raised: it may belong to another process
    with pytest.raises(TelephonyError) as info:
        await sim.redirect("CA" + "0" * 32, twiml_url="http://127.0.0.1:1/x")
    assert info.value.code == 20404


async def test_an_invalid_number_is_refused_like_twilio(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    with pytest.raises(TelephonyError) as info:
        await _place(_sim(sim_settings, http), receiver, to="07700900123")

    assert (info.value.code, info.value.is_retryable) == (21211, False)
    assert "07700900123" not in str(info.value)


async def test_aclose_stops_calls_in_flight(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http, CallScript(CallPlan(initiated_s=0.01, ring_s=10.0)))
    sid = await _place(sim, receiver)

    await sim.aclose()

    assert sim.calls[sid].ended.is_set()


# --- SMS -----------------------------------------------------------------------------------------


def _sms_statuses(receiver: Receiver) -> list[str]:
    return [h.form["MessageStatus"] for h in receiver.at("/sms")]


async def test_sms_is_queued_sent_and_delivered(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http, CallScript(sms=SmsPlan(sent_s=0.01, delivered_s=0.01)))

    sent = await sim.send_sms(to=ANSWERS, body="Hello", status_callback=f"{receiver.url}/sms", idempotency_key="s1")
    again = await sim.send_sms(to=ANSWERS, body="Hello", status_callback=f"{receiver.url}/sms", idempotency_key="s1")
    await sim.wait_sms_done(sent.sid)

    assert re.fullmatch(r"SM[0-9a-f]{32}", sent.sid) and sent.status == "queued" and again.sid == sent.sid
    assert _sms_statuses(receiver) == ["queued", "sent", "delivered"]
    for hook in receiver.at("/sms"):
        assert hook.form["MessageSid"] == hook.form["SmsSid"] == sent.sid
        assert hook.form["To"] == ANSWERS and hook.form["From"] == CALLER_ID
    _assert_signed(sim_settings, receiver.hooks)


async def test_sms_to_a_scripted_number_is_undelivered(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    script = CallScript(sms=SmsPlan(sent_s=0.01, delivered_s=0.01), undeliverable=[ANSWERS])
    sim = _sim(sim_settings, http, script)

    sent = await sim.send_sms(to=ANSWERS, body="Hello", status_callback=f"{receiver.url}/sms", idempotency_key="s2")
    await sim.wait_sms_done(sent.sid)

    assert _sms_statuses(receiver) == ["queued", "sent", "undelivered"]
    assert receiver.at("/sms")[-1].form["ErrorCode"] == "30003"


async def test_sms_to_an_unsubscribed_number_is_refused(
    sim_settings: Settings, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    sim = _sim(sim_settings, http, CallScript(unsubscribed=[ANSWERS]))

    with pytest.raises(TelephonyError) as info:
        await sim.send_sms(to=ANSWERS, body="Hello", status_callback=f"{receiver.url}/sms", idempotency_key="s3")

    assert (info.value.code, info.value.is_retryable) == (21610, False)
    assert receiver.hooks == []


# --- The factory ---------------------------------------------------------------------------------


async def test_telephony_for_follows_the_mode(http: httpx.AsyncClient) -> None:
    simulated = telephony_for(make_settings(telephony_mode=TelephonyMode.SIMULATED), http)
    real = telephony_for(make_settings(telephony_mode=TelephonyMode.TWILIO), http)

    assert isinstance(simulated, SimulatedTelephony)
    assert simulated.script.plan_for("+447700900128").outcome is CallOutcome.BUSY
    assert simulated.script.plan_for("+447700900121").outcome is CallOutcome.ANSWERED
    assert isinstance(real, TwilioTelephony)
    await real.aclose()
