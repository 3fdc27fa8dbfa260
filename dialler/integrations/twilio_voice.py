"""Twilio Voice pieces that need no network: browser access tokens, TwiML, webhook signatures.

TwiML is built with the SDK's ``VoiceResponse`` (never by string formatting: numbers and names end up
in XML attributes and must be escaped). Every builder returns the XML document as ``str``, ready to
be served with ``media_type="application/xml"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import phonenumbers
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, VoiceResponse

from dialler.config import Environment, Settings
from dialler.integrations.twilio import CALL_STATUS_EVENTS

__all__ = [
    "RECORDING_NOTICE",
    "VOICE",
    "abandoned_message",
    "agent_identity",
    "browser_phone_emulator_url",
    "bridge_to_agent",
    "hang_up",
    "machine_message",
    "hold_message",
    "reject",
    "sign",
    "speakable_number",
    "validate_signature",
    "voice_access_token",
]

VOICE: Final = "Polly.Amy"
LANGUAGE: Final = "en-GB"
RECORDING_NOTICE: Final = "This call is recorded for quality and compliance purposes."
# Recording both legs on separate channels lets quality review hear who said what.
RECORD_MODE: Final = "record-from-answer-dual"
# Twilio Client identities may hold only letters, digits and underscores.
_IDENTITY: Final = re.compile(r"^[A-Za-z0-9_]{1,121}$")
_STATUS_EVENTS: Final = " ".join(CALL_STATUS_EVENTS)


# --- Access tokens -------------------------------------------------------------------------------


def agent_identity(agent_id: object) -> str:
    """The Twilio Client identity of an agent: ``agent_<id>``, never a name or an e-mail address
    (identities appear in Twilio's logs and in call records)."""
    return "agent_" + re.sub(r"[^A-Za-z0-9_]", "_", str(agent_id))


def voice_access_token(settings: Settings, identity: str, ttl_s: int) -> str:
    """A JWT for the Twilio Voice JS SDK in the agent's browser: may place calls through our TwiML
    App (``twilio_twiml_app_sid``) and receive calls to ``identity`` (progressive-mode bridging).
    Signed with the API key secret, as Twilio requires."""
    if not _IDENTITY.match(identity):
        raise ValueError("a Twilio Client identity holds only letters, digits and underscores (1-121)")
    token = AccessToken(
        settings.twilio_account_sid,
        settings.twilio_api_key_sid,
        settings.twilio_api_key_secret.get_secret_value(),
        identity=identity,
        ttl=ttl_s,
    )
    token.add_grant(VoiceGrant(outgoing_application_sid=settings.twilio_twiml_app_sid, incoming_allow=True))
    jwt = token.to_jwt()
    return jwt.decode() if isinstance(jwt, bytes) else str(jwt)


def browser_phone_emulator_url(settings: Settings) -> str | None:
    """The local Twilio emulator the agent's browser phone registers with instead of Twilio
    (``web/static/js/emulator_device.js``), or None: only outside production, and only when the SDK
    is pointed at an emulator (production refuses ``twilio_api_base_url``, dialler/config.py). The
    UI is told it, and the pages' Content-Security-Policy lets them connect to it."""
    if settings.environment == Environment.PRODUCTION or not settings.twilio_api_base_url:
        return None
    return settings.twilio_api_base_url.rstrip("/")


# --- TwiML ---------------------------------------------------------------------------------------


def _say(response: VoiceResponse, text: str) -> None:
    response.say(text, voice=VOICE, language=LANGUAGE)


def _dial(
    caller_id: str | None,
    *,
    record: bool,
    timeout_s: int,
    action_url: str | None,
    time_limit_s: int | None,
    recording_callback_url: str | None = None,
) -> Dial:
    attrs: dict[str, Any] = {"timeout": timeout_s}
    if caller_id:
        attrs["caller_id"] = caller_id
    if record:
        attrs["record"] = RECORD_MODE
        if recording_callback_url:
            # The recording is stored (and kept) only if Twilio tells us about it.
            attrs["recording_status_callback"] = recording_callback_url
            attrs["recording_status_callback_event"] = "completed"
            attrs["recording_status_callback_method"] = "POST"
    if action_url:
        attrs["action"] = action_url
        attrs["method"] = "POST"
    if time_limit_s:
        attrs["time_limit"] = time_limit_s
    return Dial(**attrs)


def bridge_to_agent(
    agent_identity: str,
    status_callback_url: str | None = None,
    *,
    caller_id: str | None = None,
    record: bool = True,
    action_url: str | None = None,
    timeout_s: int = 20,
    recording_callback_url: str | None = None,
) -> str:
    """TwiML for a progressive call the customer has answered: ring the agent's browser.

    Nothing is said before the bridge: the customer must reach a live agent within 2 seconds of
    answering (Ofcom's abandoned-call rule), and a recorded message would use that time up; the
    agent's first scripted line is the recording notice (the agent screen's ``#say-first``).
    ``timeout_s`` is what is left of the 2 seconds; ``action_url`` receives ``DialCallStatus`` when
    the agent leg ends, so an unanswered bridge falls through to :func:`abandoned_message`. The agent
    leg's own statuses go to ``status_callback_url`` only when one is given.
    """
    response = VoiceResponse()
    dial = _dial(
        caller_id,
        record=record,
        timeout_s=timeout_s,
        action_url=action_url,
        time_limit_s=None,
        recording_callback_url=recording_callback_url,
    )
    _ring_client(dial, agent_identity, status_callback_url)
    response.append(dial)
    return str(response)


def _ring_client(dial: Dial, agent_identity: str, status_callback_url: str | None) -> None:
    """The agent's browser as the ``<Dial>``'s noun; its leg's statuses go to ``status_callback_url``
    when one is given (none: the session goes by the customer's leg and the bridge's action)."""
    if status_callback_url is None:
        dial.client(agent_identity)
    else:
        dial.client(
            agent_identity,
            status_callback=status_callback_url,
            status_callback_event=_STATUS_EVENTS,
            status_callback_method="POST",
        )


def speakable_number(number: str) -> str:
    """``+441615550100`` → ``"0 1 6 1, 5 5 5, 0 1 0 0"``: national format, read digit by digit with a
    pause between groups, so text-to-speech does not say "one thousand six hundred…"."""
    try:
        parsed = phonenumbers.parse(number, "GB")
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        national = number
    groups = [" ".join(ch for ch in group if ch.isdigit()) for group in national.split()]
    return ", ".join(g for g in groups if g)


def abandoned_message(company_name: str, callback_number: str) -> str:
    """The information message for a call we could not connect to an agent.

    Ofcom's persistent-misuse policy requires it to say who called and give a number to call back on
    (not premium-rate), and to carry no marketing. The number is read twice so it can be written down.
    """
    spoken = speakable_number(callback_number)
    response = VoiceResponse()
    _say(
        response,
        f"Hello, this is a call from {company_name}. We are sorry, none of our advisers is free to take "
        f"your call right now. Please call us back on {spoken}.",
    )
    _say(response, f"That number again is {spoken}. Thank you, goodbye.")
    response.hangup()
    return str(response)


def hold_message(message: str = "Please hold, an adviser will be with you shortly.", pause_s: int = 2) -> str:
    """Played while a connected caller waits (e.g. as a ``<Dial>`` or ``<Enqueue>`` wait URL)."""
    response = VoiceResponse()
    _say(response, message)
    response.pause(length=pause_s)
    return str(response)


def machine_message(text: str) -> str:
    """The firm's short message for an answering machine (AMD), then hang up."""
    response = VoiceResponse()
    _say(response, text)
    response.hangup()
    return str(response)


def hang_up() -> str:
    """End the call (e.g. after the bridge: the conversation is over)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def reject(message: str | None = None) -> str:
    """TwiML for a call we must not connect.

    Without a message: ``<Reject>``, so the caller hears busy and no call is billed — only valid
    before a call is answered (an incoming call or the browser's request to dial). With a message:
    ``<Say>`` then ``<Hangup>``, for calls that are already answered.
    """
    response = VoiceResponse()
    if message:
        _say(response, message)
        response.hangup()
    else:
        response.reject(reason="rejected")
    return str(response)


# --- Webhook signatures --------------------------------------------------------------------------


Params = Mapping[str, Any] | Iterable[tuple[str, str]]


class _MultiParams(dict[str, list[str]]):
    """The shape ``RequestValidator`` reads repeated keys from (it calls ``getall``)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def _multi(params: Params) -> _MultiParams:
    """Any form representation -> key -> every value. Accepts Starlette ``FormData`` (``multi_items``),
    ``parse_qsl`` pairs, and plain mappings of a value or a list of values; a repeated key (Twilio's
    ``StatusCallbackEvent``) must be signed with all its values."""
    out = _MultiParams()
    if hasattr(params, "multi_items"):
        pairs: Iterable[tuple[str, Any]] = params.multi_items()
    elif isinstance(params, Mapping):
        pairs = (
            (key, item)
            for key, value in params.items()
            for item in (value if isinstance(value, list | tuple) else [value])
        )
    else:
        pairs = params
    for key, value in pairs:
        out.setdefault(str(key), []).append(str(value))
    return out


def validate_signature(settings: Settings, url: str, params: Params, signature: str | None) -> bool:
    """Whether ``X-Twilio-Signature`` matches the request: HMAC-SHA1 with the auth token over the full
    URL Twilio requested (our public URL, with its query string) and the sorted POST parameters.

    ``url`` must be the public URL Twilio was given (``public_base_url`` + path + query), not the one
    the app sees behind a proxy. ``params``: the form as a Starlette ``FormData``, ``parse_qsl`` pairs
    or a mapping (see :func:`_multi`).
    """
    if not signature:
        return False
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    return bool(validator.validate(url, _multi(params), signature))


def sign(settings: Settings, url: str, params: Params) -> str:
    """The ``X-Twilio-Signature`` Twilio would send (for tests that post webhooks themselves)."""
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    return str(validator.compute_signature(url, _multi(params)))


def recording_callback_url(base_url: str, workflow_id: str) -> str:
    """Where Twilio posts a recording's status (``recordingStatusCallback`` on a recorded ``<Dial>``)."""
    return f"{base_url.rstrip('/')}/api/v1/webhooks/twilio/voice/recording?wf={workflow_id}"


# --- returned calls (a customer rings us) ---------------------------------------------------------


def ring_agent_for_returned_call(
    agent_identity: str,
    *,
    action_url: str,
    recording_callback_url: str | None,
    timeout_s: int = 15,
    status_callback_url: str | None = None,
) -> str:
    """A customer rang us and an agent is free: the recording notice, then the agent's browser rung
    for a short while (the ``action`` says what follows when nobody picks up). No 2-second rule here:
    the caller chose to ring, and the notice must come before the recorded conversation. The agent
    leg's statuses (rung, answered, ended) go to ``status_callback_url``: the call's workflow."""
    response = VoiceResponse()
    _say(response, RECORDING_NOTICE)
    dial = _dial(
        None,
        record=True,
        timeout_s=timeout_s,
        action_url=action_url,
        time_limit_s=None,
        recording_callback_url=recording_callback_url,
    )
    _ring_client(dial, agent_identity, status_callback_url)
    response.append(dial)
    return str(response)


def opening_hours_message(company_name: str, opening_hours: str, *, closed: bool) -> str:
    """What a caller hears when nobody can take their call: who we are and when we are open (no
    marketing)."""
    response = VoiceResponse()
    why = "our lines are closed just now" if closed else "all of our advisers are busy just now"
    _say(response, f"Thank you for calling {company_name}. We are sorry, {why}.")
    _say(response, f"Our advisers are available {opening_hours}. Please call us back then. Goodbye.")
    response.hangup()
    return str(response)
