"""The real Twilio SDK against the Twilio emulator: what we send, and how failures are classified."""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import socket

import pytest
from pydantic import SecretStr

from devstack.twilio_emulator.client import EmulatorClient
from devstack.twilio_emulator.engine import sms_segments
from dialler.config import Settings
from dialler.integrations.masking import mask_phone, mask_phones_in
from dialler.integrations.twilio import (
    CALL_STATUS_EVENTS,
    RebasedHttpClient,
    SmsSent,
    TelephonyError,
    TwilioTelephony,
    twilio_client,
)
from tests.support.telephony import API_KEY_SID, AUTH_TOKEN, CALLER_ID, Receiver, make_settings

CUSTOMER = "+447700900123"


def _call_kwargs(receiver: Receiver, **overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "to": CUSTOMER,
        "from_": CALLER_ID,
        "twiml_url": f"{receiver.url}/twiml/bridge",
        "status_callback": f"{receiver.url}/status",
        "machine_detection": False,
        "idempotency_key": "call-42:dial:1",
    }
    kwargs.update(overrides)
    return kwargs


async def test_place_call_sends_twilio_the_right_form(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    telephony = TwilioTelephony(twilio_settings)
    sid = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    [req] = twilio.requests("/Calls.json")
    assert req.path == f"/2010-04-01/Accounts/{twilio_settings.twilio_account_sid}/Calls.json"
    assert req.param("To") == CUSTOMER
    assert req.param("From") == CALLER_ID
    assert req.param("Url") == f"{receiver.url}/twiml/bridge"
    assert req.param("StatusCallback") == f"{receiver.url}/status"
    assert req.param_all("StatusCallbackEvent") == list(CALL_STATUS_EVENTS)
    assert req.param("StatusCallbackMethod") == "POST"
    assert req.param("MachineDetection") is None and req.param("AsyncAmd") is None
    # Servers authenticate with the API key (and its secret: the call was accepted), not the auth token.
    assert req.auth_user == API_KEY_SID
    assert twilio.call(sid)["status"] in {"queued", "ringing"}
    await telephony.aclose()


async def test_machine_detection_asks_for_async_amd_on_the_status_url(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    telephony = TwilioTelephony(twilio_settings)
    await telephony.place_call(**_call_kwargs(receiver, machine_detection=True))  # type: ignore[arg-type]

    [req] = twilio.requests("/Calls.json")
    assert req.param("MachineDetection") == "Enable"
    assert req.param("AsyncAmd") == "true"
    assert req.param("AsyncAmdStatusCallback") == f"{receiver.url}/status"


async def test_a_retry_with_the_same_key_does_not_ring_twice(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    telephony = TwilioTelephony(twilio_settings)
    first = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]
    again = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]
    other = await telephony.place_call(**_call_kwargs(receiver, idempotency_key="call-42:dial:2"))  # type: ignore[arg-type]

    assert first == again != other
    assert len(twilio.requests("/Calls.json")) == 2


async def test_send_sms(twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver) -> None:
    telephony = TwilioTelephony(twilio_settings)
    sent = await telephony.send_sms(
        to=CUSTOMER,
        body="Sign here: https://portal.example.co.uk/s/abc",
        status_callback=f"{receiver.url}/sms",
        idempotency_key="sms-1",
    )

    assert isinstance(sent, SmsSent)
    assert re.fullmatch(r"SM[0-9a-f]{32}", sent.sid) and sent.status == "queued"
    [req] = twilio.requests("/Messages.json")
    assert req.param("To") == CUSTOMER
    assert req.param("From") == CALLER_ID
    assert req.param("Body") == "Sign here: https://portal.example.co.uk/s/abc"
    assert req.param("StatusCallback") == f"{receiver.url}/sms"
    [message] = twilio.messages()
    assert message["sid"] == sent.sid and message["num_segments"] == "1"
    assert await telephony.send_sms(
        to=CUSTOMER, body="again", status_callback=f"{receiver.url}/sms", idempotency_key="sms-1"
    ) == SmsSent(sid=sent.sid, status="queued")
    assert len(twilio.requests("/Messages.json")) == 1


async def test_hangup_and_redirect_update_the_call(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    telephony = TwilioTelephony(twilio_settings)
    sid = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    await telephony.redirect(sid, twiml_url=f"{receiver.url}/twiml/abandoned")
    await telephony.hangup(sid)
    await telephony.hangup(sid)  # already ended: still fine

    updates = twilio.requests(f"/Calls/{sid}.json")
    assert updates[0].param("Url") == f"{receiver.url}/twiml/abandoned"
    assert [u.param("Status") for u in updates[1:]] == ["completed", "completed"]
    assert twilio.wait_ended(sid).status == "canceled"  # never answered
    # Redirecting an ended call is Twilio's 21220, and not worth retrying.
    with pytest.raises(TelephonyError) as info:
        await telephony.redirect(sid, twiml_url=f"{receiver.url}/twiml/abandoned")
    assert info.value.code == 21220 and not info.value.is_retryable


async def test_hangup_of_an_unknown_call_is_not_an_error(twilio_settings: Settings) -> None:
    await TwilioTelephony(twilio_settings).hangup("CA" + "0" * 32)


async def test_the_sdk_parses_fetched_resources(twilio_settings: Settings, receiver: Receiver) -> None:
    telephony = TwilioTelephony(twilio_settings)
    sid = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]
    client = twilio_client(twilio_settings)

    call = await asyncio.to_thread(lambda: client.calls(sid).fetch())

    assert call.sid == sid and call.to == CUSTOMER and call.status in {"queued", "ringing"}
    assert call.direction == "outbound-api" and call.date_created is not None


async def test_bad_credentials_are_not_retryable(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    wrong = twilio_settings.model_copy(update={"twilio_api_key_secret": SecretStr("not-the-secret")})

    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(wrong).place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    assert (info.value.status, info.value.code, info.value.is_retryable) == (401, 20003, False)
    assert "not-the-secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


async def test_an_invalid_number_is_21211_and_never_quoted_in_full(
    twilio_settings: Settings, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(twilio_settings).place_call(**_call_kwargs(receiver, to="07700900456"))  # type: ignore[arg-type]

    error = info.value
    assert (error.status, error.code, error.is_retryable) == (400, 21211, False)
    assert "07700900456" not in str(error) and "456" in str(error)
    assert "07700900456" not in caplog.text


async def test_an_unsubscribed_recipient_is_not_retryable(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    twilio.script(CUSTOMER, sms="unsubscribed")

    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(twilio_settings).send_sms(
            to=CUSTOMER, body="hi", status_callback=f"{receiver.url}/sms", idempotency_key="sms-2"
        )

    assert (info.value.code, info.value.is_retryable) == (21610, False)


async def test_a_server_error_is_retryable_and_the_retry_succeeds(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    telephony = TwilioTelephony(twilio_settings)
    twilio.fail_next(1, status=500)

    with pytest.raises(TelephonyError) as info:
        await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]
    assert (info.value.status, info.value.code, info.value.is_retryable) == (500, 20500, True)

    sid = await telephony.place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]
    assert twilio.call(sid)["to"] == CUSTOMER


async def test_too_many_requests_is_retryable(
    twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver
) -> None:
    twilio.fail_next(1, status=429, code=20429, message="Too Many Requests")

    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(twilio_settings).place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    assert (info.value.code, info.value.is_retryable) == (20429, True)


async def test_a_timeout_is_retryable(twilio_settings: Settings, twilio: EmulatorClient, receiver: Receiver) -> None:
    twilio.delay_next(1, seconds=1.0)

    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(twilio_settings, timeout=0.2).place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    assert info.value.is_retryable and info.value.code is None and info.value.status is None


async def test_an_unreachable_twilio_is_retryable(receiver: Receiver) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(twilio_api_base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(TelephonyError) as info:
        await TwilioTelephony(settings).place_call(**_call_kwargs(receiver))  # type: ignore[arg-type]

    assert info.value.is_retryable


def test_rebasing_rewrites_every_twilio_host_and_keeps_a_path_prefix() -> None:
    client = RebasedHttpClient("http://127.0.0.1:4010/twilio/")

    assert (
        client.rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?PageSize=5")
        == "http://127.0.0.1:4010/twilio/2010-04-01/Accounts/AC1/Calls.json?PageSize=5"
    )
    assert client.rebase("https://messaging.dublin.ie1.twilio.com/v1/Services") == (
        "http://127.0.0.1:4010/twilio/v1/Services"
    )
    with pytest.raises(ValueError):
        RebasedHttpClient("127.0.0.1:4010")


def test_without_a_base_url_the_client_talks_to_twilio() -> None:
    client = twilio_client(make_settings())

    assert not isinstance(client.http_client, RebasedHttpClient)
    assert client.account_sid == make_settings().twilio_account_sid


def test_the_error_survives_pickling() -> None:
    error = TelephonyError("place call: Twilio 400 error 21211", code=21211, status=400, retryable=False)

    copy = pickle.loads(pickle.dumps(error))

    assert (str(copy), copy.code, copy.status, copy.is_retryable) == (str(error), 21211, 400, False)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+447700900123", "+*********123"),
        ("07700 900 123", "***** *** 123"),
        ("1234", "*234"),
        ("123", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(number: str | None, masked: str) -> None:
    assert mask_phone(number) == masked


def test_masking_text_hides_numbers_but_keeps_codes_and_sids() -> None:
    text = "To +447700900123 or (0161) 555-0100 failed: code 21211 on CA1234567890abcdef1234567890abcdef"

    masked = mask_phones_in(text)

    assert "+447700900123" not in masked and "+*********123" in masked
    assert "555-0100" not in masked and "100" in masked
    assert "21211" in masked and "CA1234567890abcdef1234567890abcdef" in masked


def test_sms_segments_like_twilio() -> None:
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("€" * 80) == 1  # extension characters count double
    assert sms_segments("é" * 160) == 1  # in the GSM basic set
    assert sms_segments("ć" * 70) == 1 and sms_segments("ć" * 71) == 2  # UCS-2


def test_secrets_stay_out_of_repr() -> None:
    assert AUTH_TOKEN not in repr(make_settings())
