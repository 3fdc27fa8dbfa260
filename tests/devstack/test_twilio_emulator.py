"""The Twilio emulator, driven by the real ``twilio`` SDK (the product's own client builder) and
checked with Twilio's own ``RequestValidator``: what a product test can rely on when it points
``twilio_api_base_url`` at the emulator instead of Twilio.

A small webhook receiver (FastAPI on a free port) plays the product's side: it answers TwiML per
path and records every webhook with whether its ``X-Twilio-Signature`` is valid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from devstack.twilio_emulator.client import EmulatorClient
from dialler.config import Settings
from dialler.integrations.twilio import redact_message_body, twilio_client
from tests.support.telephony import BackgroundServer

CUSTOMER = "+447700900123"
OTHER = "+447700900456"
OUR_NUMBER = "+441632960001"


@dataclass(frozen=True)
class Hit:
    path: str
    params: dict[str, str]
    signed: bool  # X-Twilio-Signature valid for this URL and these parameters


class Receiver:
    """The product's webhooks, as far as the emulator can tell."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.hits: list[Hit] = []
        self.twiml: dict[str, str] = {}
        self._lock = threading.Lock()
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def hook(path: str, request: Request) -> Response:
            params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            signed = self.validator.validate(str(request.url), params, request.headers.get("x-twilio-signature", ""))
            with self._lock:
                self.hits.append(Hit("/" + path, params, bool(signed)))
            if "/" + path in self.twiml:
                return Response(self.twiml["/" + path], media_type="application/xml")
            return Response(status_code=204)

        self.server = BackgroundServer(app).start()
        self.url = self.server.url

    def to(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def wait(self, path: str, ready: Callable[[list[Hit]], bool], within_s: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + within_s
        while not ready(hits := self.to(path)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: only {[h.params for h in hits]}")
            time.sleep(0.02)
        return hits


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver(Settings(_env_file=None).twilio_auth_token.get_secret_value())  # type: ignore[call-arg]
    yield rec
    rec.server.stop()


@pytest.fixture
def hooks(receiver: Receiver) -> Receiver:
    receiver.hits.clear()
    receiver.twiml.clear()
    return receiver


@pytest.fixture
def twilio(emulator: EmulatorClient) -> Client:
    """The product's REST client, rebased onto the emulator, authenticating with the API key."""
    settings = Settings(_env_file=None, twilio_api_base_url=emulator.url)  # type: ignore[call-arg]
    return twilio_client(settings)


def _call(twilio: Client, hooks: Receiver, to: str = CUSTOMER, **kw: object) -> str:
    call = twilio.calls.create(
        to=to,
        from_=OUR_NUMBER,
        url=hooks.url + "/voice",
        status_callback=hooks.url + "/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        **kw,
    )
    return str(call.sid)


def _final(hooks: Receiver, path: str = "/status") -> list[Hit]:
    return hooks.wait(path, lambda hits: any(h.params.get("CallStatus") in _ENDED for h in hits))


_ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}


def test_say_then_dial_an_agent_who_accepts_late_is_on_the_timeline_with_signed_callbacks_in_order(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.2)
    emulator.device("agent-7", accept_after_s=0.5, hangup_after_s=1.0)
    hooks.twiml["/voice"] = (
        "<Response><Say>Please hold while we connect you</Say>"
        f'<Dial timeout="10" action="/dial-done"><Client statusCallback="{hooks.url}/agent-status" '
        'statusCallbackEvent="ringing answered completed">agent-7</Client></Dial>'
        "<Say>never reached: the action decides</Say></Response>"
    )
    hooks.twiml["/dial-done"] = "<Response><Say>Goodbye</Say><Hangup/></Response>"

    sid = _call(twilio, hooks)
    timeline = emulator.wait_ended(sid)

    assert timeline.kinds() == [
        "ringing",
        "answered",
        "twiml",
        "say_start",
        "say_end",
        "dial",
        "agent_ringing",
        "agent_answered",
        "person_connected",
        "hangup",  # the agent hangs up after 1 s
        "ended",
        "bridge_ended",
        "twiml",
        "say_start",
        "say_end",
        "hangup",
        "ended",
    ]
    assert timeline.said() == ["Please hold while we connect you", "Goodbye"]
    # The helper a 2-second-rule test uses: here the customer heard speech before any person.
    to_speech = timeline.seconds_to_person_or_speech()
    assert to_speech is not None and to_speech < 1.0
    assert [e["text"] for e in timeline.speech_before_person()] == ["Please hold while we connect you"]
    ringing, connected = timeline.first("agent_ringing"), timeline.first("person_connected")
    assert ringing and connected
    assert 0.45 <= connected["t"] - ringing["t"] < 1.5

    statuses = _final(hooks)
    assert [h.params["CallStatus"] for h in statuses] == ["initiated", "ringing", "in-progress", "completed"]
    assert [h.params["SequenceNumber"] for h in statuses] == ["0", "1", "2", "3"]
    assert all(h.signed for h in statuses)
    assert all(h.params["CallbackSource"] == "call-progress-events" and h.params["Timestamp"] for h in statuses)
    assert int(statuses[-1].params["CallDuration"]) >= 1
    assert statuses[-1].params["CallSid"] == sid

    agent = hooks.wait("/agent-status", lambda hits: any(h.params["CallStatus"] == "completed" for h in hits))
    assert [h.params["CallStatus"] for h in agent] == ["ringing", "in-progress", "completed"]
    assert {h.params["ParentCallSid"] for h in agent} == {sid}
    assert all(h.signed for h in agent)

    [action] = hooks.to("/dial-done")
    assert action.signed
    assert action.params["DialCallStatus"] == "completed"
    assert int(action.params["DialCallDuration"]) >= 1
    assert action.params["DialCallSid"] == agent[0].params["CallSid"]
    [voice] = hooks.to("/voice")
    assert voice.signed and voice.params["CallStatus"] == "in-progress" and voice.params["To"] == CUSTOMER
    assert twilio.calls(sid).fetch().status == "completed"


def test_a_person_connected_first_means_no_speech_before_a_person(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=1.2)
    emulator.device("agent-1", accept_after_s=0.3)
    hooks.twiml["/voice"] = '<Response><Dial timeout="2"><Client>agent-1</Client></Dial></Response>'

    timeline = emulator.wait_ended(_call(twilio, hooks))

    assert timeline.speech_before_person() == []
    seconds = timeline.seconds_to_person_or_speech()
    assert seconds is not None and 0.3 <= seconds <= 2.0
    assert timeline.first("hangup") == {**timeline.first("hangup"), "leg": "customer", "by": "customer"}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("device", "dial_status", "event"),
    [
        ({"action": "reject", "accept_after_s": 0.2}, "busy", "agent_rejected"),
        ({"registered": False}, "no-answer", "agent_offline"),
        ({"action": "ignore"}, "no-answer", "agent_no_answer"),
    ],
)
def test_an_agent_who_rejects_is_offline_or_does_not_answer_never_connects_and_the_action_decides(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver, device: dict[str, object], dial_status: str, event: str
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)
    emulator.device("agent-2", **device)
    hooks.twiml["/voice"] = '<Response><Dial timeout="1" action="/dial-done"><Client>agent-2</Client></Dial></Response>'
    hooks.twiml["/dial-done"] = "<Response><Say>Sorry, information message</Say></Response>"

    timeline = emulator.wait_ended(_call(twilio, hooks))

    assert event in timeline.kinds()
    assert "person_connected" not in timeline.kinds()
    assert timeline.said() == ["Sorry, information message"]
    [action] = hooks.to("/dial-done")
    assert action.params["DialCallStatus"] == dial_status
    assert action.params["DialCallDuration"] == "0"


@pytest.mark.parametrize(
    ("behaviour", "statuses"), [("busy", ["initiated", "busy"]), ("no-answer", ["initiated", "ringing", "no-answer"])]
)
def test_busy_and_unanswered_customers_end_without_an_answer(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver, behaviour: str, statuses: list[str]
) -> None:
    emulator.script(CUSTOMER, behaviour=behaviour, answer_after_s=0.3)

    sid = _call(twilio, hooks)
    timeline = emulator.wait_ended(sid)

    assert not timeline.answered
    assert "answered" not in timeline.kinds()
    hits = _final(hooks)
    assert [h.params["CallStatus"] for h in hits] == statuses
    assert hits[-1].params["CallDuration"] == "0"
    assert hooks.to("/voice") == []  # TwiML is only fetched on answer
    assert twilio.calls(sid).fetch().status == behaviour


@pytest.mark.parametrize(
    ("mode", "script", "verdict"),
    [
        ("Enable", {"behaviour": "machine"}, "machine_start"),
        ("DetectMessageEnd", {"behaviour": "machine", "answered_by": "machine_end_beep"}, "machine_end_beep"),
        ("Enable", {}, "human"),
        ("Enable", {"answered_by": "fax"}, "fax"),
    ],
)
def test_async_amd_posts_the_scripted_verdict(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver, mode: str, script: dict[str, object], verdict: str
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, amd_after_s=0.2, hangup_after_s=0.6, **script)
    hooks.twiml["/voice"] = '<Response><Pause length="5"/></Response>'

    sid = _call(
        twilio,
        hooks,
        machine_detection=mode,
        async_amd="true",
        async_amd_status_callback=hooks.url + "/amd",
        async_amd_status_callback_method="POST",
    )
    timeline = emulator.wait_ended(sid)

    [amd] = hooks.to("/amd")
    assert amd.signed
    assert amd.params["AnsweredBy"] == verdict and amd.params["CallSid"] == sid
    assert int(amd.params["MachineDetectionDuration"]) == 200
    assert timeline.first("amd") is not None
    assert twilio.calls(sid).fetch().answered_by == verdict
    # TwiML was fetched at once (asynchronous AMD): the customer was not kept waiting for the verdict.
    assert "AnsweredBy" not in hooks.to("/voice")[0].params


def test_a_dial_recording_is_produced_posted_and_served_with_ranges(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)
    emulator.device("agent-3", accept_after_s=0.1, hangup_after_s=1.1)
    hooks.twiml["/voice"] = (
        f'<Response><Dial record="record-from-answer-dual" recordingStatusCallback="{hooks.url}/recording" '
        'action="/dial-done"><Client>agent-3</Client></Dial></Response>'
    )
    hooks.twiml["/dial-done"] = "<Response><Hangup/></Response>"

    sid = _call(twilio, hooks)
    emulator.wait_ended(sid)
    [posted] = hooks.wait("/recording", lambda hits: len(hits) == 1)

    assert posted.signed
    assert posted.params["RecordingStatus"] == "completed" and posted.params["CallSid"] == sid
    assert posted.params["RecordingSource"] == "DialVerb" and posted.params["RecordingChannels"] == "2"
    rec_sid = posted.params["RecordingSid"]
    [action] = hooks.to("/dial-done")
    assert action.params["RecordingSid"] == rec_sid
    recording = twilio.recordings(rec_sid).fetch()
    assert recording.call_sid == sid and int(recording.duration) >= 1
    assert [r.sid for r in twilio.recordings.list(call_sid=sid)] == [rec_sid]

    whole = httpx.get(posted.params["RecordingUrl"] + ".wav")
    assert whole.status_code == 200 and whole.content[:4] == b"RIFF"
    part = httpx.get(posted.params["RecordingUrl"] + ".mp3", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert len(part.content) == 100 and part.content[:2] == b"\xff\xfb"
    assert part.headers["content-range"].startswith("bytes 0-99/")
    size = int(part.headers["content-range"].rsplit("/", 1)[1])
    assert httpx.get(posted.params["RecordingUrl"] + ".mp3", headers={"Range": f"bytes={size}-"}).status_code == 416

    twilio.recordings(rec_sid).delete()
    with pytest.raises(TwilioRestException) as gone:
        twilio.recordings(rec_sid).fetch()
    assert gone.value.code == 20404


def test_record_on_create_records_the_whole_call(emulator: EmulatorClient, twilio: Client, hooks: Receiver) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=0.5)
    hooks.twiml["/voice"] = '<Response><Pause length="5"/></Response>'

    sid = _call(twilio, hooks, record=True, recording_status_callback=hooks.url + "/recording")

    [posted] = hooks.wait("/recording", lambda hits: len(hits) == 1)
    assert posted.params["RecordingSource"] == "OutboundAPI" and posted.params["CallSid"] == sid


def test_update_hangs_up_redirects_and_cancels(emulator: EmulatorClient, twilio: Client, hooks: Receiver) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)
    emulator.script(OTHER, answer_after_s=5.0)
    hooks.twiml["/voice"] = '<Response><Pause length="30"/></Response>'
    sid = _call(twilio, hooks)
    emulator.wait_for(sid, "pause_start")

    twilio.calls(sid).update(twiml='<Response><Say>Redirected message</Say><Pause length="30"/></Response>')
    emulator.wait_for(sid, "say_end")
    twilio.calls(sid).update(status="completed")
    timeline = emulator.wait_ended(sid)

    assert timeline.said() == ["Redirected message"]
    assert timeline.first("hangup") == {**timeline.first("hangup"), "by": "api"}  # type: ignore[dict-item]
    assert _final(hooks)[-1].params["CallStatus"] == "completed"
    with pytest.raises(TwilioRestException) as ended:
        twilio.calls(sid).update(url=hooks.url + "/voice")
    assert ended.value.code == 21220

    ringing = _call(twilio, hooks, to=OTHER)
    emulator.wait_for(ringing, "ringing")
    twilio.calls(ringing).update(status="canceled")
    assert emulator.wait_ended(ringing).status == "canceled"


def test_calls_list_filters_by_to_status_and_start_time(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, behaviour="busy", answer_after_s=0.05)
    emulator.script(OTHER, behaviour="busy", answer_after_s=0.05)
    first = _call(twilio, hooks)
    second = _call(twilio, hooks, to=OTHER)
    emulator.wait_ended(first)
    emulator.wait_ended(second)

    assert [c.sid for c in twilio.calls.list(to=CUSTOMER)] == [first]
    assert {c.sid for c in twilio.calls.list(status="busy")} == {first, second}
    assert twilio.calls.list(to=CUSTOMER, status="completed") == []
    from datetime import UTC, datetime, timedelta

    assert [c.sid for c in twilio.calls.list(to=OTHER, start_time_after=datetime.now(UTC) - timedelta(minutes=1))] == [
        second
    ]
    assert twilio.calls.list(to=OTHER, start_time_after=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(list(twilio.calls.stream(page_size=1))) == 2  # paging follows next_page_uri


def test_messages_are_created_fetched_and_report_delivery(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    message = twilio.messages.create(
        to=CUSTOMER, from_=OUR_NUMBER, body="Your claim pack is ready", status_callback=hooks.url + "/sms-status"
    )

    assert message.status == "queued" and message.num_segments == "1"
    hits = hooks.wait("/sms-status", lambda hits: len(hits) == 2)
    assert [h.params["MessageStatus"] for h in hits] == ["sent", "delivered"]
    assert all(h.signed and h.params["MessageSid"] == message.sid for h in hits)
    assert twilio.messages(message.sid).fetch().status == "delivered"
    assert [m.sid for m in twilio.messages.list(to=CUSTOMER)] == [message.sid]

    emulator.script(OTHER, sms="unsubscribed")
    with pytest.raises(TwilioRestException) as refused:
        twilio.messages.create(to=OTHER, from_=OUR_NUMBER, body="hello")
    assert refused.value.code == 21610


def test_wrong_credentials_are_refused_as_twilio_refuses_them(emulator: EmulatorClient) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, twilio_api_base_url=emulator.url, twilio_api_key_secret=SecretStr("not-the-secret")
    )
    with pytest.raises(TwilioRestException) as refused:
        twilio_client(settings).messages.create(to=CUSTOMER, from_=OUR_NUMBER, body="hello")
    assert refused.value.status == 401 and refused.value.code == 20003


def test_inbound_sms_and_calls_are_posted_signed_to_the_configured_urls(
    emulator: EmulatorClient, hooks: Receiver
) -> None:
    emulator.number(OUR_NUMBER, sms_url=hooks.url + "/sms-in", voice_url=hooks.url + "/call-in")
    hooks.twiml["/call-in"] = "<Response><Say>Thank you for calling</Say></Response>"

    emulator.inbound_sms(from_=CUSTOMER, to=OUR_NUMBER, body="STOP")
    sid = emulator.inbound_call(from_=CUSTOMER, to=OUR_NUMBER)
    timeline = emulator.wait_ended(sid)

    [sms] = hooks.to("/sms-in")
    assert sms.signed
    assert sms.params["Body"] == "STOP" and sms.params["From"] == CUSTOMER and sms.params["To"] == OUR_NUMBER
    [call] = hooks.to("/call-in")
    assert call.signed
    assert call.params["Direction"] == "inbound" and call.params["CallStatus"] == "ringing"
    assert timeline.said() == ["Thank you for calling"]


def test_twiml_that_cannot_be_fetched_is_an_application_error_the_customer_hears(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)
    # No TwiML for /voice: the receiver answers 204, which is not TwiML.
    timeline = emulator.wait_ended(_call(twilio, hooks))

    assert timeline.said() == ["We are sorry, an application error has occurred. Goodbye."]
    assert len(timeline.speech_before_person()) == 1


def test_twiml_that_cannot_be_fetched_runs_the_fallback_url_a_twiml_bin_serves(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    """FallbackUrl: Twilio runs its TwiML instead of apologising, telling it what failed; the TwiML
    Bin is served by the carrier, whatever the application's own server does."""
    emulator.script(CUSTOMER, answer_after_s=0.1)
    fallback = emulator.twiml_bin("sorry", "<Response><Say>Sorry we missed you</Say></Response>")

    sid = _call(twilio, hooks, fallback_url=fallback, fallback_method="POST")
    timeline = emulator.wait_ended(sid)

    assert timeline.said() == ["Sorry we missed you"]
    [asked] = [h for h in emulator.webhooks() if h["url"] == fallback]
    assert asked["params"]["ErrorCode"] == "11200" and asked["params"]["ErrorUrl"] == hooks.url + "/voice"


def test_a_fallback_that_fails_too_is_an_application_error(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)

    sid = _call(twilio, hooks, fallback_url=emulator.url + "/twiml-bins/never-made", fallback_method="POST")

    assert emulator.wait_ended(sid).said() == ["We are sorry, an application error has occurred. Goodbye."]


def test_synchronous_amd_keeps_the_customer_waiting_and_sends_the_verdict_with_the_twiml_request(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, amd_after_s=0.4, behaviour="machine", hangup_after_s=1.0)
    hooks.twiml["/voice"] = "<Response><Hangup/></Response>"

    timeline = emulator.wait_ended(_call(twilio, hooks, machine_detection="Enable"))

    [voice] = hooks.to("/voice")
    assert voice.params["AnsweredBy"] == "machine_start"
    twiml = timeline.first("twiml")
    # The silence a person would hear under synchronous AMD (asyncio may wake a timer a millisecond early).
    assert twiml is not None and twiml["t"] >= 0.39


def test_a_manual_device_rings_until_the_control_api_accepts_and_a_customer_hangup_ends_the_bridge(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    emulator.device("agent-9", action="manual")
    hooks.twiml["/voice"] = (
        f'<Response><Dial timeout="10" action="/dial-done"><Client statusCallback="{hooks.url}/agent-status">'
        "agent-9</Client></Dial></Response>"
    )
    sid = _call(twilio, hooks)
    emulator.wait_for(sid, "agent_ringing")
    [incoming] = emulator.device_state("agent-9")["incoming"]
    assert incoming["parent_call_sid"] == sid

    emulator.accept(incoming["call_sid"])
    emulator.wait_for(sid, "person_connected")
    emulator.customer_hangup(sid)
    timeline = emulator.wait_ended(sid)

    hangups = [(e["leg"], e["by"]) for e in timeline.events if e["kind"] == "hangup"]
    assert hangups == [("customer", "customer"), ("agent", "caller")]
    agent = hooks.wait("/agent-status", lambda hits: len(hits) == 1)
    assert agent[0].params["CallStatus"] == "completed"
    # Twilio still requests the action when the caller hangs up during the <Dial>.
    [action] = hooks.wait("/dial-done", lambda hits: len(hits) == 1)
    assert action.params["DialCallStatus"] == "completed" and action.params["CallStatus"] == "completed"


def test_dial_number_redirect_play_and_pause_follow_the_twiml_and_the_time_scale(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.1)
    emulator.script(OTHER, answer_after_s=0.2, hangup_after_s=0.3)
    emulator.knobs(time_scale=0.1)
    hooks.twiml["/voice"] = '<Response><Pause length="3"/><Redirect>/next</Redirect><Say>skipped</Say></Response>'
    hooks.twiml["/next"] = f"<Response><Play>https://example.invalid/hold.mp3</Play><Dial>{OTHER}</Dial></Response>"

    sid = _call(twilio, hooks)
    timeline = emulator.wait_ended(sid)

    pause_start, pause_end = timeline.first("pause_start"), timeline.first("pause_end")
    assert pause_start and pause_end and 0.25 <= pause_end["t"] - pause_start["t"] < 2.0  # 3 s × 0.1
    assert timeline.first("play_start") == {**timeline.first("play_start"), "url": "https://example.invalid/hold.mp3"}  # type: ignore[dict-item]
    connected = timeline.first("person_connected")
    assert connected is not None and connected["leg"] == "number"
    assert "skipped" not in timeline.said()
    assert [c.to for c in twilio.calls.list(parent_call_sid=sid)] == [OTHER]


def test_a_redirect_before_the_answer_changes_the_twiml_fetched_on_answer(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.5)
    hooks.twiml["/other"] = "<Response><Say>the new document</Say></Response>"
    sid = _call(twilio, hooks)
    emulator.wait_for(sid, "ringing")

    twilio.calls(sid).update(url=hooks.url + "/other", method="POST")

    assert emulator.wait_ended(sid).said() == ["the new document"]
    assert hooks.to("/voice") == []


def test_a_reset_drops_calls_in_flight_without_posting_anything_more(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.3)
    sid = _call(twilio, hooks)
    emulator.wait_for(sid, "ringing")

    emulator.reset()
    time.sleep(0.6)

    assert [h.params["CallStatus"] for h in hooks.to("/status")] == ["initiated", "ringing"]
    assert hooks.to("/voice") == []
    assert emulator.calls() == []


def test_a_browser_phone_call_fetches_the_app_twiml_with_its_parameters_and_dials_the_customer(
    emulator: EmulatorClient, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, answer_after_s=0.3, hangup_after_s=0.4)
    hooks.twiml["/app"] = f'<Response><Dial callerId="{OUR_NUMBER}"><Number>{CUSTOMER}</Number></Dial></Response>'

    sid = emulator.inbound_call(from_="client:agent_7", to=CUSTOMER, url=hooks.url + "/app", params={"customer": "42"})
    timeline = emulator.wait_ended(sid)

    [app] = hooks.to("/app")
    assert app.signed and app.params["From"] == "client:agent_7" and app.params["customer"] == "42"
    assert [e["leg"] for e in timeline.events if e["kind"] == "person_connected"] == ["number"]
    assert [c["from"] for c in emulator.calls() if c["parent_call_sid"] == sid] == [OUR_NUMBER]


async def test_the_products_twilio_telephony_places_redirects_hangs_up_and_texts_through_the_emulator(
    emulator: EmulatorClient, hooks: Receiver
) -> None:
    """What the rewiring relies on: dialler.integrations.twilio.TwilioTelephony, unchanged, against
    the emulator — calls with asynchronous AMD and progress events, redirect, hangup, SMS."""
    from dialler.integrations.twilio import TwilioTelephony

    emulator.script(CUSTOMER, answer_after_s=0.1, hangup_after_s=None)
    hooks.twiml["/voice"] = '<Response><Pause length="30"/></Response>'
    hooks.twiml["/abandoned"] = '<Response><Say>information message</Say><Pause length="30"/></Response>'
    settings = Settings(_env_file=None, twilio_api_base_url=emulator.url)  # type: ignore[call-arg]
    telephony = TwilioTelephony(settings)
    try:
        sid = await telephony.place_call(
            to=CUSTOMER,
            from_=OUR_NUMBER,
            twiml_url=hooks.url + "/voice",
            status_callback=hooks.url + "/status",
            machine_detection=True,
            idempotency_key="attempt-1",
        )
        emulator.wait_for(sid, "amd")
        await telephony.redirect(sid, twiml_url=hooks.url + "/abandoned")
        emulator.wait_for(sid, "say_end")
        await telephony.hangup(sid)
        timeline = emulator.wait_ended(sid)
        await telephony.hangup(sid)  # an ended call: not an error
        sms = await telephony.send_sms(
            to=CUSTOMER, body="We tried to call you", status_callback=hooks.url + "/sms", idempotency_key="sms-1"
        )
    finally:
        await telephony.aclose()

    assert timeline.said() == ["information message"]
    statuses = hooks.wait("/status", lambda hits: any(h.params.get("CallStatus") == "completed" for h in hits))
    assert [h.params.get("CallStatus") or "amd:" + h.params["AnsweredBy"] for h in statuses] == [
        "ringing",
        "in-progress",
        "amd:human",
        "completed",
    ]
    assert all(h.signed for h in statuses)
    assert sms.status == "queued"
    hooks.wait("/sms", lambda hits: [h.params["MessageStatus"] for h in hits] == ["sent", "delivered"])


async def test_a_message_body_is_redacted_as_twilio_redacts_it(emulator: EmulatorClient, twilio: Client) -> None:
    message = twilio.messages.create(to=CUSTOMER, from_=OUR_NUMBER, body="Hi Philippa, your claim pack is ready")
    settings = Settings(_env_file=None, twilio_api_base_url=emulator.url)  # type: ignore[call-arg]

    assert await redact_message_body(settings, message.sid)
    assert await redact_message_body(settings, message.sid)  # again: idempotent

    fetched = twilio.messages(message.sid).fetch()
    assert fetched.body == "" and fetched.to == CUSTOMER
    with pytest.raises(TwilioRestException) as refused:
        twilio.messages(message.sid).update(body="something else")
    assert refused.value.status == 400
    assert not await redact_message_body(settings, "SM" + "0" * 32)  # Twilio no longer has it


@pytest.mark.parametrize(
    ("number", "status"),
    [
        ("+447700900127", "no-answer"),
        ("+447700900128", "busy"),
        ("+447700900129", "completed"),  # a machine answers (and hangs up)
        ("+447700900121", "completed"),  # a person answers
    ],
)
def test_the_demo_rules_pick_the_outcome_by_the_last_digit_and_a_script_wins(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver, number: str, status: str
) -> None:
    """What `make run`'s demo data gets (and its banner lists): 7 rings out, 8 busy, 9 voicemail."""
    emulator.demo_rules(True)
    hooks.twiml["/voice"] = '<Response><Pause length="30"/></Response>'
    sid = _call(twilio, hooks, to=number, machine_detection="Enable", async_amd="true")
    if status == "completed":
        verdict = "machine_start" if number.endswith("9") else "human"
        amd = emulator.wait_for(sid, "amd").first("amd")
        assert amd is not None and amd["answered_by"] == verdict, amd
        emulator.customer_hangup(sid)
    timeline = emulator.wait_ended(sid)
    assert timeline.status == status

    emulator.script(number, behaviour="busy", answer_after_s=0.1)  # a script wins over the demo rule
    again = _call(twilio, hooks, to=number)
    assert emulator.wait_ended(again).status == "busy"


def test_a_text_to_an_undeliverable_number_reports_undelivered_with_twilios_code(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    emulator.script(CUSTOMER, sms="undelivered")
    message = twilio.messages.create(
        to=CUSTOMER, from_=OUR_NUMBER, body="hello", status_callback=hooks.url + "/sms-status"
    )

    hits = hooks.wait("/sms-status", lambda hits: len(hits) == 2)
    assert [h.params["MessageStatus"] for h in hits] == ["sent", "undelivered"]
    assert hits[-1].params["ErrorCode"] == "30003" and hits[-1].signed
    [listed] = emulator.messages(CUSTOMER)
    assert listed["sid"] == message.sid and listed["status"] == "undelivered" and listed["body"] == "hello"


def test_the_control_api_lists_the_rest_requests_and_injects_faults(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    """What tests of the product's Twilio client need: what the SDK really sent (and as whom), and
    Twilio failing or answering slowly on the next requests."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    emulator.fail_next(1, status=503, code=20503, message="Service Unavailable")
    with pytest.raises(TwilioRestException) as failed:
        _call(twilio, hooks)
    assert (failed.value.status, failed.value.code) == (503, 20503)

    emulator.delay_next(1, seconds=0.5)
    started = time.monotonic()
    sid = _call(twilio, hooks)  # slow, but placed
    assert time.monotonic() - started >= 0.5

    requests = emulator.requests("/Calls.json")
    assert len(requests) == 2 and all(r.auth_user == settings.twilio_api_key_sid for r in requests)
    assert requests[-1].param("To") == CUSTOMER
    assert requests[-1].param_all("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert [c["sid"] for c in emulator.calls()] == [sid]  # the failed request placed nothing
    emulator.reset()
    assert emulator.requests() == [] and emulator.messages() == []


async def test_reconciliation_finds_the_call_and_text_an_earlier_request_made_and_only_those(
    emulator: EmulatorClient, twilio: Client, hooks: Receiver
) -> None:
    """What a retried dial or text asks Twilio (dialler.outbound.attempts): calls to the number from our
    caller ID since the request began (not those other sessions own), texts by the digest of their
    body; and the emulator's held answer, during which Twilio has a call its requester never heard of."""
    import asyncio
    import hashlib
    from datetime import UTC, datetime, timedelta

    from dialler.integrations.twilio import TwilioTelephony

    emulator.script(CUSTOMER, behaviour="no-answer")
    settings = Settings(_env_file=None, twilio_api_base_url=emulator.url, caller_id=OUR_NUMBER)  # type: ignore[call-arg]
    telephony = TwilioTelephony(settings)
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        assert await telephony.find_call(to=CUSTOMER, from_=OUR_NUMBER, since=since, exclude=frozenset()) is None
        emulator.hold_next_answer("calls", 1.5)
        placing = asyncio.create_task(
            telephony.place_call(
                to=CUSTOMER,
                from_=OUR_NUMBER,
                twiml_url=hooks.url + "/voice",
                status_callback=hooks.url + "/status",
                machine_detection=False,
                idempotency_key="held",
            )
        )
        await asyncio.sleep(0.5)
        assert not placing.done()  # the answer is held…
        found = await telephony.find_call(to=CUSTOMER, from_=OUR_NUMBER, since=since, exclude=frozenset())
        assert found is not None  # …and Twilio already has the call
        assert await placing == found
        other = _call(twilio, hooks)  # a later call to the same number, owned elsewhere
        assert (
            await telephony.find_call(to=CUSTOMER, from_=OUR_NUMBER, since=since, exclude=frozenset({found})) == other
        )
        assert await telephony.find_call(to=OTHER, from_=OUR_NUMBER, since=since, exclude=frozenset()) is None
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert await telephony.find_call(to=CUSTOMER, from_=OUR_NUMBER, since=later, exclude=frozenset()) is None

        body = "We tried to call you"
        sent = await telephony.send_sms(to=CUSTOMER, body=body, status_callback=hooks.url + "/sms", idempotency_key="s")
        digest = hashlib.sha256(body.encode()).hexdigest()
        texted = await telephony.find_sms(to=CUSTOMER, since=since, digest=digest)
        assert texted is not None and texted.sid == sent.sid
        other_digest = hashlib.sha256(b"another text").hexdigest()
        assert await telephony.find_sms(to=CUSTOMER, since=since, digest=other_digest) is None
        assert await telephony.find_sms(to=CUSTOMER, since=later, digest=digest) is None
        await asyncio.sleep(0.5)  # sent (DateSent is set) 0.1 s after it was queued
        assert [m.sid for m in twilio.messages.list(to=CUSTOMER, date_sent_after=since)] == [sent.sid]
        assert twilio.messages.list(to=CUSTOMER, date_sent_after=later) == []
    finally:
        await telephony.aclose()
