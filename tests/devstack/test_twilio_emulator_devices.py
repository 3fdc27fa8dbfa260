"""The emulator's browser-phone API (``devstack/twilio_emulator/device_api.py``), driven over HTTP as
``web/static/js/emulator_device.js`` drives it, with access tokens the product issues
(``twilio_voice.voice_access_token``): only a token Twilio would accept registers; a registered
browser, not its script, is rung by ``<Dial><Client>``; its accept puts a person on the line, its
hang-up ends the bridge; a browser that stops polling is offline within seconds; CORS only for the
UI's origins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from twilio.rest import Client

from devstack.twilio_emulator.client import EmulatorClient
from devstack.twilio_emulator.devices import HEARTBEAT_GRACE_S
from dialler.config import Settings
from dialler.integrations.twilio import twilio_client
from dialler.integrations.twilio_voice import voice_access_token

CUSTOMER = "+447700900123"
OUR_NUMBER = "+441632960001"
IDENTITY = "agent_5"
UI = "http://127.0.0.1:8000"  # a development UI's origin


@pytest.fixture
def settings(emulator: EmulatorClient) -> Settings:  # type: ignore[override]
    return Settings(_env_file=None, twilio_api_base_url=emulator.url)  # type: ignore[call-arg]


@pytest.fixture
def twilio(settings: Settings) -> Client:
    return twilio_client(settings)


@pytest.fixture
def phone(emulator: EmulatorClient) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url + "/device/v1", timeout=20, headers={"Origin": UI}) as client:
        yield client


def bearer(settings: Settings, identity: str = IDENTITY, ttl_s: int = 600) -> dict[str, str]:
    return {"Authorization": "Bearer " + voice_access_token(settings, identity, ttl_s)}


def register(phone: httpx.Client, settings: Settings) -> str:
    answer = phone.post("/registrations", headers=bearer(settings))
    assert answer.status_code == 201, answer.text
    assert answer.json()["identity"] == IDENTITY
    return str(answer.json()["device_id"])


def next_event(phone: httpx.Client, settings: Settings, device: str, after: int) -> dict[str, Any]:
    answer = phone.get(f"/registrations/{device}/events", params={"after": after}, headers=bearer(settings))
    assert answer.status_code == 200, answer.text
    events = answer.json()["events"]
    assert events, "no event within one poll"
    return dict(events[0])


def dial_the_agent(twilio: Client) -> str:
    twiml = f'<Response><Dial timeout="10"><Client>{IDENTITY}</Client></Dial></Response>'
    return str(twilio.calls.create(to=CUSTOMER, from_=OUR_NUMBER, twiml=twiml).sid)


def test_only_a_token_twilio_would_accept_registers(
    emulator: EmulatorClient, settings: Settings, phone: httpx.Client
) -> None:
    forged = settings.model_copy(update={"twilio_api_key_secret": SecretStr("not-the-secret")})
    other_account = settings.model_copy(update={"twilio_account_sid": "AC" + "1" * 32})
    expired = voice_access_token(settings, IDENTITY, 1)
    time.sleep(1.5)
    refusals = {
        "none": phone.post("/registrations"),
        "forged": phone.post("/registrations", headers=bearer(forged)),
        "other account": phone.post("/registrations", headers=bearer(other_account)),
        "expired": phone.post("/registrations", headers={"Authorization": "Bearer " + expired}),
        "garbage": phone.post("/registrations", headers={"Authorization": "Bearer x.y.z"}),
    }
    assert {name: (r.status_code, r.json()["code"]) for name, r in refusals.items()} == {
        "none": (401, 20101),
        "forged": (401, 20101),
        "other account": (401, 20101),
        "expired": (401, 20104),
        "garbage": (401, 20101),
    }
    assert emulator.device_state(IDENTITY)["browser"] is None  # nothing registered


def test_a_registered_browser_is_rung_accepts_mutes_and_hangs_up(
    emulator: EmulatorClient, settings: Settings, twilio: Client, phone: httpx.Client
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    # The script would reject: the browser, not the script, decides once one is registered.
    emulator.device(IDENTITY, action="reject")
    device = register(phone, settings)
    sid = dial_the_agent(twilio)

    incoming = next_event(phone, settings, device, 0)
    assert incoming["type"] == "incoming"
    assert incoming["parameters"]["From"] == OUR_NUMBER and incoming["parameters"]["CallSid"] == incoming["call_sid"]
    other = bearer(settings, "agent_6")  # another agent's token cannot take this call
    assert phone.post(f"/calls/{incoming['call_sid']}/accept", headers=other).status_code == 404
    assert phone.post(f"/calls/{incoming['call_sid']}/accept", headers=bearer(settings)).status_code == 200
    emulator.wait_for(sid, "person_connected")
    assert phone.post(f"/calls/{incoming['call_sid']}/mute", json={"muted": True}, headers=bearer(settings)).is_success
    assert phone.post(f"/calls/{incoming['call_sid']}/disconnect", headers=bearer(settings)).is_success

    ended = next_event(phone, settings, device, incoming["seq"])
    assert (ended["type"], ended["call_sid"]) == ("disconnect", incoming["call_sid"])
    timeline = emulator.wait_for(sid, "bridge_ended")
    answered = timeline.first("agent_answered")
    assert answered is not None and answered["device"] == "browser"
    agent = [
        (e["kind"], e.get("by"))
        for e in timeline.events
        if e["leg"] == "agent" and e["kind"] in {"agent_muted", "hangup"}
    ]
    assert agent == [("agent_muted", None), ("hangup", "agent")]
    bridge_ended = timeline.first("bridge_ended")
    assert bridge_ended is not None and bridge_ended["by"] == "agent"
    assert not timeline.speech_before_person()


def test_a_browser_that_rejects_is_busy_and_the_customer_hanging_up_cancels_its_ringing(
    emulator: EmulatorClient, settings: Settings, twilio: Client, phone: httpx.Client
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    device = register(phone, settings)

    first = dial_the_agent(twilio)
    incoming = next_event(phone, settings, device, 0)
    assert phone.post(f"/calls/{incoming['call_sid']}/reject", headers=bearer(settings)).is_success
    assert "agent_rejected" in emulator.wait_for(first, "agent_rejected").kinds()
    assert twilio.calls(incoming["call_sid"]).fetch().status == "busy"

    second = dial_the_agent(twilio)
    ringing = next_event(phone, settings, device, incoming["seq"] + 1)  # after the first call's cancel
    assert ringing["type"] == "incoming"
    emulator.customer_hangup(second)
    cancel = next_event(phone, settings, device, ringing["seq"])
    assert (cancel["type"], cancel["call_sid"]) == ("cancel", ringing["call_sid"])


def test_a_browser_that_stops_polling_is_offline_within_seconds_and_nothing_rings(
    emulator: EmulatorClient, settings: Settings, twilio: Client, phone: httpx.Client
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    register(phone, settings)
    assert emulator.device_state(IDENTITY)["browser"]["online"]

    time.sleep(HEARTBEAT_GRACE_S + 0.5)  # no poll: the tab has gone

    assert not emulator.device_state(IDENTITY)["browser"]["online"]
    sid = dial_the_agent(twilio)
    timeline = emulator.wait_ended(sid)
    assert "agent_offline" in timeline.kinds() and "person_connected" not in timeline.kinds()


def test_an_unregistered_browser_is_offline_at_once(
    emulator: EmulatorClient, settings: Settings, phone: httpx.Client
) -> None:
    device = register(phone, settings)
    assert phone.delete(f"/registrations/{device}", headers=bearer(settings)).status_code == 204
    assert not emulator.device_state(IDENTITY)["browser"]["online"]
    polled = phone.get(f"/registrations/{device}/events", headers=bearer(settings)).json()
    assert (polled["registered"], polled["reason"]) == (False, "destroyed")
    assert [e["type"] for e in polled["events"]] == ["unregistered"]

    emulator.reset()  # a restart forgets it: the browser is told to register again
    forgotten = phone.get(f"/registrations/{device}/events", headers=bearer(settings)).json()
    assert (forgotten["registered"], forgotten["reason"]) == (False, "unknown")


def test_cors_answers_the_uis_origin_only_and_only_on_the_device_api(emulator: EmulatorClient) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ours = httpx.options(emulator.url + "/device/v1/registrations", headers={"Origin": UI, **ask})
    theirs = httpx.options(emulator.url + "/device/v1/registrations", headers={"Origin": "https://evil.example", **ask})
    rest = httpx.get(emulator.url + "/_emulator/health", headers={"Origin": UI})
    assert ours.status_code == 204 and ours.headers["access-control-allow-origin"] == UI
    assert "authorization" in ours.headers["access-control-allow-headers"].lower()
    assert theirs.status_code == 403 and "access-control-allow-origin" not in theirs.headers
    assert "access-control-allow-origin" not in rest.headers


def test_a_browser_that_goes_during_a_call_ends_its_side_of_the_bridge(
    emulator: EmulatorClient, settings: Settings, twilio: Client, phone: httpx.Client
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    device = register(phone, settings)
    sid = dial_the_agent(twilio)
    incoming = next_event(phone, settings, device, 0)
    assert phone.post(f"/calls/{incoming['call_sid']}/accept", headers=bearer(settings)).is_success
    emulator.wait_for(sid, "person_connected")

    # No more polls (the tab crashed, the laptop lost its network): the agent's side ends by itself.
    timeline = emulator.wait_for(sid, "bridge_ended", within_s=HEARTBEAT_GRACE_S + 3)

    gone = timeline.first("agent_device_gone")
    bridge = timeline.first("bridge_ended")
    assert gone is not None and bridge is not None and bridge["by"] == "agent"
