"""Every SMS the dialler sends, in one place, and the rules on how long a text may be.

Templates are rendered with the company name and a few non-personal parameters (a time, a link, a
document type): the customer's name is never put in a text, so that a message read over someone's
shoulder, or on a shared phone, says nothing about the claim but who it is from.

Length and character set follow the carriers (and Twilio's billing):

* GSM-7 (the GSM 03.38 basic set, plus its extension table whose characters count double): 160
  characters in one segment, 153 per segment once split;
* UCS-2 as soon as one character is outside GSM-7 (an emoji, a curly quote, "ć"): 70 UTF-16 code units
  in one segment, 67 per segment once split.

A text may use at most :data:`MAX_SEGMENTS` segments. Free text is first "smart encoded" (curly quotes,
dashes, ellipses and non-breaking spaces become their GSM-7 equivalents, as Twilio's Smart Encoding
does), so that a pasted apostrophe does not double the cost of a message.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import phonenumbers

from dialler.comms.errors import InvalidSmsBody, SmsTooLong, TemplateError
from dialler.config import Settings

__all__ = [
    "AGENT_TEMPLATES",
    "CALLBACK_TEMPLATES",
    "MAX_SEGMENTS",
    "SENDABLE_WHEN_OPTED_OUT",
    "Encoding",
    "SmsLength",
    "TemplateContext",
    "TemplateName",
    "check_body",
    "describe_validity",
    "measure",
    "render",
    "smart_encode",
]

MAX_SEGMENTS: Final = 6
GSM7_SINGLE: Final = 160
GSM7_PART: Final = 153
UCS2_SINGLE: Final = 70
UCS2_PART: Final = 67

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED: Final = frozenset("^{}\\[~]|€\f")

_SMART: Final = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\t": " ",
    }
)


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: Encoding
    characters: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def smart_encode(text: str) -> str:
    """Typographic punctuation replaced by its GSM-7 equivalent (Twilio's Smart Encoding)."""
    return text.translate(_SMART)


def measure(body: str) -> SmsLength:
    """Encoding, length and segment count of ``body`` as the carrier bills it."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in body):
        septets = sum(2 if ch in GSM7_EXTENDED else 1 for ch in body)
        segments = 1 if septets <= GSM7_SINGLE else math.ceil(septets / GSM7_PART)
        return SmsLength(Encoding.GSM7, len(body), septets, segments)
    units = len(body.encode("utf-16-le")) // 2
    segments = 1 if units <= UCS2_SINGLE else math.ceil(units / UCS2_PART)
    return SmsLength(Encoding.UCS2, len(body), units, segments)


def check_body(body: str, *, max_segments: int = MAX_SEGMENTS) -> SmsLength:
    """The length of a text we may send, or :class:`InvalidSmsBody` / :class:`SmsTooLong` saying why not."""
    if not body.strip():
        raise InvalidSmsBody("The message is empty.")
    bad = sorted({f"U+{ord(ch):04X}" for ch in body if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\r"})
    if bad:
        raise InvalidSmsBody(f"The message holds control characters ({', '.join(bad)}).")
    length = measure(body)
    if length.segments > max_segments:
        per = GSM7_PART if length.encoding is Encoding.GSM7 else UCS2_PART
        raise SmsTooLong(
            f"The message needs {length.segments} segments ({length.encoding}, {length.units} units); the limit "
            f"is {max_segments} ({max_segments * per} units in {length.encoding})."
            + (
                " A character outside GSM-7 (an emoji or accent) makes it UCS-2."
                if length.encoding is Encoding.UCS2
                else ""
            ),
            {"segments": length.segments, "encoding": str(length.encoding), "units": length.units},
        )
    return length


# --- Templates ---------------------------------------------------------------------------------


class TemplateName(StrEnum):
    MAGIC_LINK_SIGN = "magic_link_sign"
    MAGIC_LINK_UPLOAD = "magic_link_upload"
    MISSED_CALL = "missed_call"
    CALLBACK_CONFIRMATION = "callback_confirmation"
    CALLBACK_REMINDER = "callback_reminder"
    CALLBACK_CANCELLED = "callback_cancelled"
    STOP_CONFIRMATION = "stop_confirmation"
    START_CONFIRMATION = "start_confirmation"


_TEXTS: Final[Mapping[TemplateName, str]] = {
    TemplateName.MAGIC_LINK_SIGN: (
        "{company}: please sign your claim documents here: {url} "
        "The link works once and expires in {validity}. Reply STOP to opt out."
    ),
    TemplateName.MAGIC_LINK_UPLOAD: (
        "{company}: please upload your {document} here: {url} "
        "The link works once and expires in {validity}. Reply STOP to opt out."
    ),
    TemplateName.MISSED_CALL: (
        "{company}: we tried to call you about your claim. Please call us back on {callback_number} "
        "or reply to this text. Reply STOP to opt out."
    ),
    TemplateName.CALLBACK_CONFIRMATION: (
        "{company}: your callback is booked for {when}. Reply CANCEL to cancel it, or STOP to opt out of "
        "calls and texts."
    ),
    TemplateName.CALLBACK_REMINDER: (
        "{company}: reminder, we will call you at {when}. Reply CANCEL to cancel the callback, or STOP to "
        "opt out of calls and texts."
    ),
    TemplateName.CALLBACK_CANCELLED: (
        "{company}: your callback is cancelled. Call us on {callback_number} if you need us. Reply STOP to opt out."
    ),
    TemplateName.STOP_CONFIRMATION: (
        "{company}: you are opted out and will get no more calls or texts from us. Reply START to opt back in."
    ),
    TemplateName.START_CONFIRMATION: (
        "{company}: you are opted back in to calls and texts about your claim. Reply STOP to opt out."
    ),
}

# Parameters each template needs from the caller (the company, callback number and time zone come
# from the TemplateContext).
_PARAMS: Final[Mapping[TemplateName, frozenset[str]]] = {
    TemplateName.MAGIC_LINK_SIGN: frozenset({"url", "validity"}),
    TemplateName.MAGIC_LINK_UPLOAD: frozenset({"url", "validity", "document"}),
    TemplateName.MISSED_CALL: frozenset(),
    TemplateName.CALLBACK_CONFIRMATION: frozenset({"due_at"}),
    TemplateName.CALLBACK_REMINDER: frozenset({"due_at"}),
    TemplateName.CALLBACK_CANCELLED: frozenset(),
    TemplateName.STOP_CONFIRMATION: frozenset(),
    TemplateName.START_CONFIRMATION: frozenset(),
}

AGENT_TEMPLATES: Final = frozenset({TemplateName.MISSED_CALL})
"""Templates an agent may send from the REST API; the others are sent by workflows and webhooks."""
CALLBACK_TEMPLATES: Final = frozenset(
    {TemplateName.CALLBACK_CONFIRMATION, TemplateName.CALLBACK_REMINDER, TemplateName.CALLBACK_CANCELLED}
)
"""A reply "CANCEL" to one of these is about the callback, never an opt-out (see
:mod:`dialler.comms.keywords`)."""
SENDABLE_WHEN_OPTED_OUT: Final = frozenset({TemplateName.STOP_CONFIRMATION})
"""The one text an opted-out number receives: the acknowledgement of its STOP."""

# Requirement types of the replica, as a customer would name them.
DOCUMENT_NAMES: Final[Mapping[str, str]] = {
    "id_document": "proof of identity",
    "proof_of_address": "proof of address",
    "bank_statement": "bank statements",
    "finance_agreement": "finance agreement",
    "questionnaire": "questionnaire",
}


@dataclass(frozen=True, slots=True)
class TemplateContext:
    company_name: str
    callback_number: str  # E.164; shown in national format
    timezone: str = "Europe/London"
    # A demo/test stack's clock shift (dialler.clock): times are stored real, and a text names them on
    # the clock the agent booked on and the screens show, or a demo's customer reads another time.
    clock_offset_s: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateContext:
        return cls(settings.company_name, settings.caller_id, settings.calling_timezone, settings.clock_offset_s)


def describe_validity(seconds: int) -> str:
    """``259200`` → ``"72 hours"``, ``5400`` → ``"90 minutes"``: how long a link works, for the text."""
    if seconds >= 2 * 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _national(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, "GB")
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _when(value: str, timezone: str, offset_s: int = 0) -> str:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise TemplateError(f"due_at must be an ISO 8601 time, got {value!r}") from None
    if at.tzinfo is None:
        raise TemplateError("due_at needs a time zone")
    local = (at + timedelta(seconds=offset_s)).astimezone(ZoneInfo(timezone))
    return f"{local:%a} {local.day} {local:%b} at {local:%H:%M}"


def render(name: TemplateName | str, context: TemplateContext, params: Mapping[str, str] | None = None) -> str:
    """The text of template ``name``; :class:`TemplateError` for an unknown template or a missing
    parameter, :class:`SmsTooLong` if the rendering would exceed the segment limit."""
    try:
        template = TemplateName(name)
    except ValueError:
        raise TemplateError(f"unknown SMS template {name!r}") from None
    given = dict(params or {})
    missing = sorted(_PARAMS[template] - given.keys())
    if missing:
        raise TemplateError(f"template {template} needs {', '.join(missing)}")
    values = {
        "company": context.company_name,
        "callback_number": _national(context.callback_number),
        "url": given.get("url", ""),
        "validity": given.get("validity", ""),
        "document": DOCUMENT_NAMES.get(given.get("document", ""), "documents"),
        "when": _when(given["due_at"], context.timezone, context.clock_offset_s) if "due_at" in given else "",
    }
    body = _TEXTS[template].format(**values)
    check_body(body)
    return body
