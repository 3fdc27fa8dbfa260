"""The HTTP face of the emulator: Twilio's REST API (2010-04-01) and the ``/_emulator`` control API.

REST requests are checked as Twilio checks them: HTTP basic auth with the account sid and auth
token or an API key sid and secret (401 / 20003 otherwise), the account in the path (404 / 20404),
and the parameters Twilio most often rejects (21211 bad To, 21212/21213 From, 21205 no Url, 21602
no Body, 21617 too long, 21610 unsubscribed recipient, 21220 redirecting an ended call). Errors are
Twilio's JSON error document, which the SDK turns into ``TwilioRestException``.

The control API (no auth; bind to 127.0.0.1) is for tests and the demo — see ``client.py``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from devstack.twilio_emulator import audio
from devstack.twilio_emulator.device_api import DeviceCors, device_router
from devstack.twilio_emulator.engine import (
    API_VERSION,
    E164,
    ENDED,
    Emulator,
    Fault,
    Leg,
    Message,
    NumberConfig,
    Recording,
    RestRequest,
    now_rfc2822,
    rfc2822,
)
from devstack.twilio_emulator.scripts import CustomerScript, DeviceScript, SmsFate

__all__ = ["build_app"]


def build_app(emulator: Emulator, *, cors_origins: Sequence[str] = ()) -> FastAPI:
    """``cors_origins``: the UIs whose browser phones may use the device API (default: any served
    from this machine)."""
    app = FastAPI(title="Twilio emulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(DeviceCors, origins=cors_origins)
    app.state.emulator = emulator
    base = f"/{API_VERSION}/Accounts/{{account}}"
    em = emulator

    @app.on_event("shutdown")
    async def _shutdown() -> None:
        await em.aclose()

    # --- Calls ---------------------------------------------------------------------------------

    @app.post(base + "/Calls.json")
    async def create_call(account: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        one = _one(params)
        to, from_ = one.get("To", ""), one.get("From", "")
        if not _callable(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not _callable(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not (one.get("Url") or one.get("Twiml")):
            return _error(400, 21205, "Url parameter is required.")
        leg = em.create_call(params)
        await _hold_answer(em, "calls")
        return JSONResponse(_call_json(em, leg), status_code=201)

    @app.get(base + "/Calls.json")
    async def list_calls(account: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        one = _one(params)
        calls = [leg for leg in reversed(list(em.calls.values())) if _call_matches(leg, one)]
        return _page(request, "calls", [_call_json(em, leg) for leg in calls], one)

    @app.get(base + "/Calls/{sid}.json")
    async def fetch_call(account: str, sid: str, request: Request) -> Response:
        _, early = await _intake(em, request, account)
        if early:
            return early
        leg = em.calls.get(sid)
        return _not_found(request) if leg is None else JSONResponse(_call_json(em, leg))

    @app.post(base + "/Calls/{sid}.json")
    async def update_call(account: str, sid: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        leg = em.calls.get(sid)
        if leg is None:
            return _not_found(request)
        one = _one(params)
        if (one.get("Url") or one.get("Twiml")) and (leg.status in ENDED or leg.ended.is_set()):
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        status = one.get("Status")
        if status is not None and status not in {"completed", "canceled"}:
            return _error(400, 21218, f"Invalid Status: {status}")
        em.update_call(leg, params)
        return JSONResponse(_call_json(em, leg))

    @app.delete(base + "/Calls/{sid}.json")
    async def delete_call(account: str, sid: str, request: Request) -> Response:
        _, early = await _intake(em, request, account)
        if early:
            return early
        leg = em.calls.get(sid)
        if leg is None:
            return _not_found(request)
        if not leg.ended.is_set():
            return _error(400, 20009, "Cannot delete a call that is in progress")
        del em.calls[sid]
        return Response(status_code=204)

    # --- Recordings --------------------------------------------------------------------------------

    @app.get(base + "/Recordings.json")
    async def list_recordings(account: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        one = _one(params)
        recs = [r for r in reversed(list(em.recordings.values())) if one.get("CallSid") in (None, r.call_sid)]
        return _page(request, "recordings", [_recording_json(em, r) for r in recs], one)

    @app.get(base + "/Calls/{call_sid}/Recordings.json")
    async def list_call_recordings(account: str, call_sid: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        recs = [r for r in reversed(list(em.recordings.values())) if r.call_sid == call_sid]
        return _page(request, "recordings", [_recording_json(em, r) for r in recs], _one(params))

    @app.get(base + "/Recordings/{name}")
    async def fetch_recording(account: str, name: str, request: Request) -> Response:
        sid, _, ext = name.partition(".")
        if ext in {"mp3", "wav", ""}:
            # Media: public by default on Twilio (unless the account turns on auth for media).
            recording = em.recordings.get(sid)
            if recording is None or account != em.account_sid:
                return _not_found(request)
            return _media(request, recording, ext or "wav")
        _, early = await _intake(em, request, account)
        if early:
            return early
        recording = em.recordings.get(sid)
        if recording is None or ext != "json":
            return _not_found(request)
        return JSONResponse(_recording_json(em, recording))

    @app.delete(base + "/Recordings/{name}")
    async def delete_recording(account: str, name: str, request: Request) -> Response:
        _, early = await _intake(em, request, account)
        if early:
            return early
        sid = name.partition(".")[0]
        if em.recordings.pop(sid, None) is None:
            return _not_found(request)
        return Response(status_code=204)

    # --- Messages ----------------------------------------------------------------------------------

    @app.post(base + "/Messages.json")
    async def create_message(account: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        one = _one(params)
        to, from_, body = one.get("To", ""), one.get("From", ""), one.get("Body", "")
        if not E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not one.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
        if not body and not one.get("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if em.scripts.customer(to).sms is SmsFate.UNSUBSCRIBED:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        message = em.create_message(params)
        await _hold_answer(em, "messages")
        return JSONResponse(_message_json(em, message), status_code=201)

    @app.get(base + "/Messages.json")
    async def list_messages(account: str, request: Request) -> Response:
        params, early = await _intake(em, request, account)
        if early:
            return early
        one = _one(params)
        found = [
            m
            for m in reversed(list(em.messages.values()))
            if one.get("To") in (None, m.to)
            and one.get("From") in (None, m.from_)
            and _time_ok(m.date_sent, one, "DateSent")
        ]
        return _page(request, "messages", [_message_json(em, m) for m in found], one)

    @app.get(base + "/Messages/{sid}.json")
    async def fetch_message(account: str, sid: str, request: Request) -> Response:
        _, early = await _intake(em, request, account)
        if early:
            return early
        message = em.messages.get(sid)
        return _not_found(request) if message is None else JSONResponse(_message_json(em, message))

    @app.post(base + "/Messages/{sid}.json")
    async def update_message(account: str, sid: str, request: Request) -> Response:
        # Twilio's one update of a sent message: ``Body=""`` redacts its body (kept are the sid, the
        # numbers, the status and the dates). Any other body is refused.
        params, early = await _intake(em, request, account)
        if early:
            return early
        message = em.messages.get(sid)
        if message is None:
            return _not_found(request)
        one = _one(params)
        if one.get("Body", None) != "":
            return _error(400, 21602, "Only an empty Body (redaction) may be set on an existing message.")
        message.body = ""
        message.date_updated = datetime.now(UTC)
        return JSONResponse(_message_json(em, message))

    # --- Control API -------------------------------------------------------------------------------

    @app.get("/_emulator/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "account_sid": em.account_sid, "calls": len(em.calls)}

    @app.post("/_emulator/reset")
    async def reset() -> dict[str, Any]:
        await em.reset()
        return {"ok": True}

    @app.post("/_emulator/knobs")
    async def knobs(request: Request) -> Response:
        data = await request.json()
        for key, value in data.items():
            if not hasattr(em.knobs, key):
                return JSONResponse({"error": f"unknown knob {key}"}, status_code=400)
            setattr(em.knobs, key, float(value))
        return JSONResponse(vars(em.knobs))

    @app.post("/_emulator/hold-next/{resource}")
    async def hold_next(resource: str, request: Request) -> Response:
        """``{"seconds": 30}``: the next ``resource`` (calls, messages) created is created at once, and
        its answer to the REST client waits that long (the client may be gone by then)."""
        if resource not in {"calls", "messages"}:
            return JSONResponse({"error": f"unknown resource {resource}"}, status_code=400)
        em.held_answers[resource] = float((await request.json())["seconds"])
        return JSONResponse({"resource": resource, "seconds": em.held_answers[resource]})

    @app.post("/_emulator/scripts")
    async def set_script(request: Request) -> Response:
        """``{"number": "+447700900123", "behaviour": "busy", ...}`` (see CustomerScript);
        ``"number": "*"`` sets the default for numbers without a script or demo rule;
        ``"demo_rules": false`` turns the last-digit rules off."""
        data = dict(await request.json())
        if "demo_rules" in data:
            em.scripts.demo_rules = bool(data.pop("demo_rules"))
        number = data.pop("number", None)
        if number is None:
            return JSONResponse({"demo_rules": em.scripts.demo_rules})
        try:
            if number == "*":
                em.scripts.default_customer = script = CustomerScript.from_json(data)
            else:
                em.scripts.customers[number] = script = CustomerScript.from_json(data)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"number": number, **script.to_json()})

    @app.post("/_emulator/devices/{identity}")
    async def set_device(identity: str, request: Request) -> Response:
        """``{"registered": true, "action": "accept", "accept_after_s": 0.5}`` (see DeviceScript);
        identity ``*`` sets the default device."""
        data = dict(await request.json())
        try:
            if identity == "*":
                em.scripts.default_device = script = DeviceScript.from_json(data)
            else:
                em.scripts.devices[identity] = script = DeviceScript.from_json(data)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"identity": identity, **script.to_json()})

    @app.get("/_emulator/devices/{identity}")
    async def get_device(identity: str) -> dict[str, Any]:
        """The device's script, its incoming (ringing) calls, and its browser registration (None
        when no browser ever registered this identity)."""
        ringing = [
            {"call_sid": leg.sid, "parent_call_sid": leg.parent_sid, "from": leg.from_}
            for leg in em.calls.values()
            if leg.to == f"client:{identity}" and leg.status == "ringing" and not leg.ended.is_set()
        ]
        browser = em.browsers.of(identity)
        return {
            "identity": identity,
            **em.scripts.device(identity).to_json(),
            "incoming": ringing,
            "browser": None if browser is None else browser.to_json(),
        }

    @app.put("/_emulator/twiml-bins/{name}")
    async def set_twiml_bin(name: str, request: Request) -> dict[str, Any]:
        """A TwiML Bin: the document (the request's body) served at the URL returned."""
        em.twiml_bins[name] = (await request.body()).decode()
        return {"name": name, "url": f"{em.public_url}/twiml-bins/{name}"}

    @app.api_route("/twiml-bins/{name}", methods=["GET", "POST"])
    async def twiml_bin(name: str) -> Response:
        """A TwiML Bin's document, as Twilio serves one from its own host (whatever our API is doing)."""
        if name not in em.twiml_bins:
            return Response(status_code=404)
        return Response(em.twiml_bins[name], media_type="text/xml")

    @app.post("/_emulator/numbers/{number}")
    async def set_number(number: str, request: Request) -> dict[str, Any]:
        data = dict(await request.json())
        config = NumberConfig(**{k: data.get(k) for k in ("voice_url", "sms_url", "status_callback")})
        if number == "*":
            em.default_numbers = config
        else:
            em.numbers[number] = config
        return {"number": number, **vars(config)}

    @app.post("/_emulator/calls/{sid}/customer-hangup")
    async def customer_hangup(sid: str) -> Response:
        """The far end of this leg hangs up (the customer; on an agent leg, the agent)."""
        leg = em.calls.get(sid)
        if leg is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        em.hangup(leg, by=leg.label)
        return JSONResponse({"call_sid": sid, "status": leg.status})

    @app.post("/_emulator/calls/{sid}/accept")
    async def accept(sid: str) -> Response:
        return _decide(em, sid, "accept")

    @app.post("/_emulator/calls/{sid}/reject")
    async def reject(sid: str) -> Response:
        return _decide(em, sid, "reject")

    @app.get("/_emulator/calls/{sid}/timeline")
    async def timeline(sid: str) -> Response:
        leg = em.calls.get(sid)
        if leg is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse(
            {"call_sid": sid, "status": leg.status, "ended": leg.ended.is_set(), **leg.timeline.to_json()}
        )

    @app.get("/_emulator/calls")
    async def calls() -> list[dict[str, Any]]:
        return [_call_json(em, leg) for leg in em.calls.values()]

    @app.post("/_emulator/faults")
    async def add_faults(request: Request) -> Response:
        """``{"count": 1, "status": 500, "code": 20500, "message": "...", "delay_s": 0}``: what the next
        ``count`` REST requests get (``status: null`` with a ``delay_s``: a slow but good answer)."""
        data = dict(await request.json())
        count = int(data.pop("count", 1))
        try:
            fault = Fault(**data)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        em.faults.extend([fault] * count)
        return JSONResponse({"pending": len(em.faults)})

    @app.get("/_emulator/requests")
    async def rest_requests() -> list[dict[str, Any]]:
        return [r.to_json() for r in em.requests]

    @app.get("/_emulator/messages")
    async def messages() -> list[dict[str, Any]]:
        """Every message, oldest first (the REST list is newest first and paged)."""
        return [_message_json(em, m) for m in em.messages.values()]

    @app.get("/_emulator/webhooks")
    async def webhooks() -> list[dict[str, Any]]:
        return list(em.webhooks)

    @app.post("/_emulator/inbound/sms")
    async def inbound_sms(request: Request) -> Response:
        """``{"from": "+447700900123", "to": "<our number>", "body": "STOP", "url": optional}``"""
        data = await request.json()
        try:
            message, status = await em.inbound_sms(
                from_=data["from"], to=data["to"], body=data.get("body", ""), url=data.get("url")
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"message_sid": message.sid, "webhook_status": status})

    @app.post("/_emulator/inbound/call")
    async def inbound_call(request: Request) -> Response:
        """``{"from": ..., "to": <our number>, "url": optional, "hangup_after_s": optional, "params": {}}``;
        ``"from": "client:agent_7"`` is a call placed by that agent's browser phone (click-to-dial)."""
        data = await request.json()
        try:
            leg = em.inbound_call(
                from_=data["from"],
                to=data["to"],
                url=data.get("url"),
                hangup_after_s=data.get("hangup_after_s"),
                params=data.get("params"),
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"call_sid": leg.sid})

    app.include_router(device_router(em))  # the browser phone's signalling (device_api.py)

    @app.api_route("/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def anything_else(rest: str, request: Request) -> Response:
        return _error(404, 20404, f"The requested resource /{rest} was not found")

    return app


# --- helpers -----------------------------------------------------------------------------------------


async def _intake(em: Emulator, request: Request, account: str) -> tuple[dict[str, list[str]], Response | None]:
    """The request's parameters (query and form; repeated keys keep every value), or an error."""
    # Parsed by hand: Starlette's form parser needs python-multipart, and Twilio only sends urlencoded.
    body = (await request.body()).decode()
    params: dict[str, list[str]] = {}
    for key, value in [*request.query_params.multi_items(), *parse_qsl(body, keep_blank_values=True)]:
        params.setdefault(key, []).append(value)
    auth = _basic_auth(request.headers.get("authorization"))
    em.requests.append(RestRequest(request.method, request.url.path, params, auth[0] if auth else None))
    if em.faults:
        fault = em.faults.popleft()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            return params, _error(fault.status, fault.code, fault.message)
    if auth not in em.credentials:
        response = _error(401, 20003, "Authenticate")
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return params, response
    if account != em.account_sid:
        return params, _not_found(request)
    return params, None


async def _hold_answer(em: Emulator, resource: str) -> None:
    seconds = em.held_answers.pop(resource, 0.0)
    if seconds > 0:
        await asyncio.sleep(seconds)


def _one(params: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in params.items() if v}


def _decide(em: Emulator, sid: str, choice: str) -> Response:
    leg = em.calls.get(sid)
    if leg is None or leg.decision is None or leg.decision.done():
        return JSONResponse({"error": "no incoming call waiting for a decision"}, status_code=409)
    leg.decision.set_result(choice)
    return JSONResponse({"call_sid": sid, "decision": choice})


def _callable(number: str) -> bool:
    return bool(E164.match(number)) or number.startswith(("client:", "sip:"))


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status_code=status,
    )


def _not_found(request: Request) -> JSONResponse:
    return _error(404, 20404, f"The requested resource {request.url.path} was not found")


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def _time_ok(moment: datetime | None, one: dict[str, str], name: str) -> bool:
    """Twilio's ``StartTime`` (that day, or that instant), ``StartTime>`` (on or after), ``StartTime<``
    (on or before) filters; times are UTC."""
    for suffix in ("", ">", "<"):
        raw = one.get(name + suffix)
        if raw is None:
            continue
        if moment is None:
            return False
        is_date = len(raw) == 10
        bound = datetime.strptime(raw, "%Y-%m-%d" if is_date else "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if suffix == "" and is_date and not bound <= moment < bound + timedelta(days=1):
            return False
        if suffix == "" and not is_date and moment.replace(microsecond=0) != bound:
            return False
        if suffix == ">" and moment < bound:
            return False
        if suffix == "<" and moment > (bound + timedelta(days=1) if is_date else bound + timedelta(seconds=1)):
            return False
    return True


def _call_matches(leg: Leg, one: dict[str, str]) -> bool:
    return (
        one.get("To") in (None, leg.to)
        and one.get("From") in (None, leg.from_)
        and one.get("Status") in (None, leg.status)
        and one.get("ParentCallSid") in (None, leg.parent_sid)
        and _time_ok(leg.start_time, one, "StartTime")
        and _time_ok(leg.end_time, one, "EndTime")
    )


def _page(request: Request, key: str, items: list[dict[str, Any]], one: dict[str, str]) -> JSONResponse:
    size = max(1, min(int(one.get("PageSize", "50")), 1000))
    page = int(one.get("Page", "0"))
    chunk = items[page * size : (page + 1) * size]
    path = request.url.path

    def uri(n: int) -> str:
        query = [(k, v) for k, v in one.items() if k not in {"Page", "PageSize", "PageToken"}]
        return f"{path}?{urlencode([*query, ('PageSize', size), ('Page', n)])}"

    more = (page + 1) * size < len(items)
    return JSONResponse(
        {
            key: chunk,
            "end": page * size + max(len(chunk) - 1, 0),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": page * size,
            "uri": uri(page),
        }
    )


def _call_json(em: Emulator, leg: Leg) -> dict[str, Any]:
    prefix = f"/{API_VERSION}/Accounts/{em.account_sid}/Calls/{leg.sid}"
    return {
        "sid": leg.sid,
        "account_sid": em.account_sid,
        "annotation": None,
        "answered_by": leg.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(leg.date_created),
        "date_updated": now_rfc2822(),
        "direction": leg.direction,
        "duration": str(leg.duration_s) if leg.ended.is_set() else None,
        "end_time": rfc2822(leg.end_time),
        "forwarded_from": None,
        "from": leg.from_,
        "from_formatted": leg.from_,
        "group_sid": None,
        "parent_call_sid": leg.parent_sid,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "start_time": rfc2822(leg.start_time),
        "status": leg.status,
        "to": leg.to,
        "to_formatted": leg.to,
        "trunk_sid": None,
        "uri": prefix + ".json",
        "subresource_uris": {
            "recordings": prefix + "/Recordings.json",
            "notifications": prefix + "/Notifications.json",
            "events": prefix + "/Events.json",
        },
    }


def _recording_json(em: Emulator, recording: Recording) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{em.account_sid}/Recordings/{recording.sid}"
    return {
        "account_sid": em.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": None,
        "date_created": rfc2822(recording.date_created),
        "date_updated": rfc2822(recording.date_created),
        "start_time": rfc2822(recording.start_time),
        "duration": str(recording.duration_s),
        "sid": recording.sid,
        "price": None,
        "price_unit": "USD",
        "status": recording.status,
        "channels": recording.channels,
        "source": recording.source,
        "error_code": None,
        "uri": uri + ".json",
        "encryption_details": None,
        "media_url": em.recording_url(recording),
        "subresource_uris": {
            "add_on_results": uri + "/AddOnResults.json",
            "transcriptions": uri + "/Transcriptions.json",
        },
    }


def _message_json(em: Emulator, message: Message) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{em.account_sid}/Messages/{message.sid}"
    return {
        "sid": message.sid,
        "account_sid": em.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": message.error_code,
        "error_message": None if message.error_code is None else "Unreachable destination handset",
        "from": message.from_ or None,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": "0",
        "num_segments": str(message.segments),
        "price": None,
        "price_unit": "USD",
        "status": message.status,
        "to": message.to,
        "uri": uri + ".json",
        "subresource_uris": {"media": uri + "/Media.json"},
    }


def _media(request: Request, recording: Recording, ext: str) -> Response:
    data = audio.mp3(recording.duration_s) if ext == "mp3" else audio.wav(recording.duration_s)
    media_type = "audio/mpeg" if ext == "mp3" else "audio/x-wav"
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'inline; filename="{recording.sid}.{ext}"'}
    try:
        wanted = audio.byte_range(request.headers.get("range"), len(data))
    except ValueError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    if wanted is None:
        return Response(data, media_type=media_type, headers=headers)
    first, last = wanted
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return Response(data[first : last + 1], status_code=206, media_type=media_type, headers=headers)
