"""A small client for the emulator's control API, for tests and the demo::

    emu = EmulatorClient(url)
    emu.script("+447700900123", behaviour="busy")
    emu.device("agent-7", action="accept", accept_after_s=0.5)
    timeline = emu.wait_ended(call_sid)
    assert timeline.seconds_to_person_or_speech() <= 2.0
    assert not timeline.speech_before_person()

Synchronous (httpx): the emulator is another process, and each call is a local round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.twilio_emulator.timeline import seconds_to_person_or_speech, speech_before_person

__all__ = ["EmulatorClient", "RestRequest", "Timeline"]


@dataclass(frozen=True)
class RestRequest:
    """One REST request the emulator received: ``auth_user`` is the API key (or account) sid it
    authenticated with; the secret is never kept."""

    method: str
    path: str
    params: dict[str, list[str]]
    auth_user: str | None

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def param_all(self, name: str) -> list[str]:
        return list(self.params.get(name, []))


@dataclass(frozen=True)
class Timeline:
    """A call's timeline as the emulator reports it (see ``devstack/twilio_emulator/timeline.py``)."""

    call_sid: str
    status: str
    ended: bool
    answered: bool
    events: list[dict[str, Any]]

    def kinds(self, leg: str | None = None) -> list[str]:
        return [e["kind"] for e in self.events if leg is None or e["leg"] == leg]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["kind"] == kind), None)

    def seconds_to_person_or_speech(self) -> float | None:
        return seconds_to_person_or_speech(self.events)

    def speech_before_person(self) -> list[dict[str, Any]]:
        return speech_before_person(self.events)

    def said(self) -> list[str]:
        return [e["text"] for e in self.events if e["kind"] == "say_start"]


class EmulatorClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/_emulator", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    # --- set-up ----------------------------------------------------------------------------------

    def reset(self) -> None:
        self._post("/reset")

    def knobs(self, **values: float) -> dict[str, float]:
        """``speech_rate`` (s/word), ``play_s``, ``time_scale`` (× <Pause>), ``webhook_timeout_s``."""
        return dict(self._post("/knobs", values))

    def script(self, number: str, **fields: Any) -> dict[str, Any]:
        """Script a customer: ``behaviour`` (answer, machine, busy, no-answer, failed),
        ``answer_after_s``, ``hangup_after_s``, ``answered_by``, ``amd_after_s``, ``sms``."""
        return dict(self._post("/scripts", {"number": number, **fields}))

    def fail_next(
        self, count: int = 1, *, status: int = 500, code: int = 20500, message: str = "Internal Server Error"
    ) -> None:
        """The next ``count`` REST requests fail with Twilio's error document (an outage, a 429)."""
        self._post("/faults", {"count": count, "status": status, "code": code, "message": message})

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        """The next ``count`` REST requests are answered ``seconds`` late (a client timeout)."""
        self._post("/faults", {"count": count, "status": None, "delay_s": seconds})

    def hold_next_answer(self, resource: str, seconds: float) -> None:
        """The next ``resource`` (``calls``, ``messages``) is created at once and answered ``seconds``
        later: the window in which Twilio has accepted a request and the client has not heard back."""
        self._post(f"/hold-next/{resource}", {"seconds": seconds})

    def twiml_bin(self, name: str, twiml: str) -> str:
        """Host ``twiml`` as a TwiML Bin (kept across resets, like Twilio's); its URL."""
        response = self._http.put(f"/twiml-bins/{name}", content=twiml)
        response.raise_for_status()
        return str(response.json()["url"])

    def demo_rules(self, on: bool) -> None:
        self._post("/scripts", {"demo_rules": on})

    def device(self, identity: str, **fields: Any) -> dict[str, Any]:
        """Script an agent device: ``registered``, ``action`` (accept, reject, ignore, manual),
        ``accept_after_s``, ``hangup_after_s``."""
        return dict(self._post(f"/devices/{identity}", fields))

    def device_state(self, identity: str) -> dict[str, Any]:
        return dict(self._get(f"/devices/{identity}"))

    def number(self, number: str, **urls: str | None) -> dict[str, Any]:
        """Where inbound calls / SMS to ``number`` go: ``voice_url``, ``sms_url``, ``status_callback``."""
        return dict(self._post(f"/numbers/{number}", urls))

    # --- during a call ---------------------------------------------------------------------------

    def customer_hangup(self, call_sid: str) -> None:
        self._post(f"/calls/{call_sid}/customer-hangup")

    def accept(self, call_sid: str) -> None:
        self._post(f"/calls/{call_sid}/accept")

    def reject(self, call_sid: str) -> None:
        self._post(f"/calls/{call_sid}/reject")

    def inbound_sms(self, *, from_: str, to: str, body: str, url: str | None = None) -> dict[str, Any]:
        return dict(self._post("/inbound/sms", {"from": from_, "to": to, "body": body, "url": url}))

    def inbound_call(
        self,
        *,
        from_: str,
        to: str,
        url: str | None = None,
        hangup_after_s: float | None = None,
        params: dict[str, str] | None = None,
    ) -> str:
        """A call to our number ``to``; with ``from_="client:<identity>"``, a browser phone's outgoing
        call (click-to-dial) whose TwiML comes from ``url`` (the TwiML App's voice URL)."""
        body = {"from": from_, "to": to, "url": url, "hangup_after_s": hangup_after_s, "params": params}
        return str(self._post("/inbound/call", body)["call_sid"])

    # --- inspection ------------------------------------------------------------------------------

    def timeline(self, call_sid: str) -> Timeline:
        data = self._get(f"/calls/{call_sid}/timeline")
        return Timeline(
            call_sid=data["call_sid"],
            status=data["status"],
            ended=data["ended"],
            answered=data["answered"],
            events=data["events"],
        )

    def wait_ended(self, call_sid: str, within_s: float = 15.0) -> Timeline:
        """The call's timeline once it has ended (its final status callback queued)."""
        deadline = time.monotonic() + within_s
        while True:
            timeline = self.timeline(call_sid)
            if timeline.ended:
                return timeline
            if time.monotonic() > deadline:
                raise TimeoutError(f"call {call_sid} still {timeline.status} after {within_s} s")
            time.sleep(0.05)

    def wait_for(self, call_sid: str, kind: str, within_s: float = 15.0) -> Timeline:
        """The timeline once an event of ``kind`` is on it."""
        deadline = time.monotonic() + within_s
        while True:
            timeline = self.timeline(call_sid)
            if kind in timeline.kinds():
                return timeline
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} on call {call_sid} after {within_s} s")
            time.sleep(0.05)

    def calls(self) -> list[dict[str, Any]]:
        return list(self._get("/calls"))

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self._get("/webhooks"))

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        """Every text sent through the REST API (Twilio's message JSON), oldest first; ``to`` filters."""
        return [m for m in self._get("/messages") if to is None or m["to"] == to]

    def requests(self, path_suffix: str = "", method: str = "POST") -> list[RestRequest]:
        """The REST requests received (the latest 2,000), oldest first: what the SDK really sent."""
        found = [RestRequest(**r) for r in self._get("/requests")]
        return [r for r in found if r.method == method and r.path.endswith(path_suffix)]

    def call(self, sid: str) -> dict[str, Any]:
        """One call (Twilio's call JSON, as the emulator's call list has it)."""
        return next(c for c in self.calls() if c["sid"] == sid)
