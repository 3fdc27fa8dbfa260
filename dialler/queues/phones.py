"""Normalise a phone number as typed by the customer into a callable E.164 number, or say why not.

Only numbers in the United Kingdom proper (phonenumbers region ``GB``) are callable, because:

* the compliance gates (calling hours in Europe/London, UK bank holidays, Ofcom's abandoned-call
  rules) are written for UK consumers; a customer abroad would be called at the wrong local time;
* our caller id (CLI) is a UK geographic number presented under Ofcom's CLI guidance, and the
  TPS / do-not-call screening we rely on only covers UK numbers.

The Crown Dependencies (Jersey, Guernsey, Isle of Man) share +44 but are not the UK: they have their
own regulators and are charged as international by many carriers, so they are ``not_uk`` too.
Only fixed-line, mobile and VoIP numbers are callable: premium-rate, freephone, shared-cost, pager,
personal (070) and UAN (03) numbers are not a consumer's own line.

Ofcom reserves ``07700 900000``–``07700 900999`` and ``01632 960000``–``01632 960999`` for TV and
drama; phonenumbers rejects them, but our seed data and fixtures use them (they can never ring a
real person), so they are accepted unless ``allow_fictional=False``. The other drama ranges
(``0161 496 0xxx``, ``020 7946 0xxx``...) sit inside allocated geographic ranges and are valid anyway.

Speed: the batch rebuild normalises ~500,000 numbers. The common shapes (national ``0...``,
``+44``, ``0044``, ``44``) take a fast path that matches the national number against the GB
metadata regexes directly; anything else, and every rejection, goes through ``phonenumbers.parse``
so that the fast path can only ever *accept* what the slow path would accept. Results are also kept
in a bounded LRU cache keyed on the raw string (numbers repeat across rebuilds and CDC events).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult
from phonenumbers.phonemetadata import PhoneMetadata

from dialler.compliance.drama import is_drama_number

__all__ = ["PHONE_REASONS", "PhoneCheck", "caller_id_problem", "normalise_phone", "normalise_phone_uncached"]

REGION: Final = "GB"
COUNTRY_CODE: Final = 44
# Longer than any number typed into the replica's VARCHAR(32); keeps junk out of the cache.
MAX_RAW_LENGTH: Final = 64
CACHE_SIZE: Final = 2**19  # above the 10x customer count (500,000): a warm rebuild finds every number

PHONE_REASONS: Final[dict[str, str]] = {
    "missing": "no phone number on file",
    "unparseable": "the phone number is not a number",
    "too_short": "the phone number is too short",
    "too_long": "the phone number is too long",
    "invalid": "the phone number is not a valid number",
    "not_uk": "only UK numbers are called (calling hours, CLI and TPS rules are UK-only)",
    "unsupported_type": "premium-rate, freephone, shared-cost, pager and personal numbers are not called",
}

_CALLABLE_TYPES: Final = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.VOIP,
    }
)


@dataclass(frozen=True, slots=True)
class PhoneCheck:
    """``e164`` when the number is callable, otherwise ``reason`` (a key of :data:`PHONE_REASONS`)."""

    e164: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.e164 is not None

    @property
    def reason_text(self) -> str | None:
        return None if self.reason is None else PHONE_REASONS[self.reason]


def _gb_callable_pattern() -> re.Pattern[str]:
    # Built from phonenumbers' own GB metadata so that a library upgrade updates both paths.
    md = PhoneMetadata.metadata_for_region(REGION)
    assert md is not None
    parts = [
        desc.national_number_pattern
        for desc in (md.fixed_line, md.mobile, md.voip)
        if desc is not None and desc.national_number_pattern
    ]
    return re.compile("|".join(f"(?:{p})" for p in parts))


_GB_CALLABLE: Final = _gb_callable_pattern()
# A CLI may also be a number a customer calls back at no more than the national rate that is not a
# consumer's own line: 03 (UAN) and freephone. Never premium rate, shared cost (084/087), personal
# (070) or pager: Ofcom's CLI guidance (General Condition C6).
_CLI_ONLY_TYPES: Final = frozenset({PhoneNumberType.UAN, PhoneNumberType.TOLL_FREE})
_FICTIONAL: Final = re.compile(r"7700900[0-9]{3}|1632960[0-9]{3}")
# Separators people type; removed before the fast-path match. Anything else falls to the slow path.
_SEPARATORS: Final = str.maketrans("", "", " \t-()./\u00a0")
# +44 / 0044 / 44 then an optional trunk 0 ("+44 (0)161 ..."), or a national number with its 0.
# [0-9] rather than \d: \d also matches non-ASCII digits, which the slow path handles properly.
_FAST_SHAPE: Final = re.compile(r"(?:\+44|0044|44)0?([1-9][0-9]{8,9})|0([1-9][0-9]{8,9})")


@lru_cache(maxsize=CACHE_SIZE)
def normalise_phone(raw: str | None, *, allow_fictional: bool = True) -> PhoneCheck:
    """The E.164 form of ``raw`` if we may call it, else the reason we may not."""
    if raw is None or not raw.strip():
        return PhoneCheck(None, "missing")
    if len(raw) > MAX_RAW_LENGTH:
        return PhoneCheck(None, "too_long")
    m = _FAST_SHAPE.fullmatch(raw.translate(_SEPARATORS))
    if m is not None:
        nsn = m.group(1) or m.group(2)
        if _GB_CALLABLE.fullmatch(nsn) or (allow_fictional and _FICTIONAL.fullmatch(nsn)):
            return PhoneCheck(f"+44{nsn}", None)
    return _slow_path(raw, allow_fictional)


# The same rule without the cache, for a one-off stream such as a TPS file of a million numbers seen
# once: caching those would only evict the customers' numbers that the rebuild and CDC find there.
normalise_phone_uncached: Final = normalise_phone.__wrapped__


def _slow_path(raw: str, allow_fictional: bool) -> PhoneCheck:
    try:
        number = phonenumbers.parse(raw, REGION)
    except NumberParseException as exc:
        if exc.error_type in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
            return PhoneCheck(None, "too_short")
        if exc.error_type == NumberParseException.TOO_LONG:
            return PhoneCheck(None, "too_long")
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return PhoneCheck(None, "not_uk")
        return PhoneCheck(None, "unparseable")
    if number.country_code != COUNTRY_CODE:
        return PhoneCheck(None, "not_uk")
    nsn = phonenumbers.national_significant_number(number)
    if allow_fictional and _FICTIONAL.fullmatch(nsn):
        return PhoneCheck(f"+44{nsn}", None)
    if not phonenumbers.is_valid_number(number):
        possible = phonenumbers.is_possible_number_with_reason(number)
        if possible == ValidationResult.TOO_SHORT:
            return PhoneCheck(None, "too_short")
        if possible == ValidationResult.TOO_LONG:
            return PhoneCheck(None, "too_long")
        return PhoneCheck(None, "invalid")
    if phonenumbers.region_code_for_number(number) != REGION:
        return PhoneCheck(None, "not_uk")
    if phonenumbers.number_type(number) not in _CALLABLE_TYPES:
        return PhoneCheck(None, "unsupported_type")
    return PhoneCheck(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None)


def caller_id_problem(raw: str) -> str | None:
    """Why ``raw`` cannot be the caller id (CLI) we present to customers, or None when it can: a valid
    UK number outside Ofcom's drama ranges that can be called back at no more than the national rate
    (General Condition C6). The validity is :func:`normalise_phone`'s, with no fictional numbers."""
    if not raw.strip():
        return "not set"
    if is_drama_number(raw):
        return "in an Ofcom drama range (a call back reaches nobody)"
    check = normalise_phone(raw, allow_fictional=False)
    if check.ok:
        return None
    if check.reason == "unsupported_type":
        if phonenumbers.number_type(phonenumbers.parse(raw, REGION)) in _CLI_ONLY_TYPES:
            return None
        return "a premium-rate, shared-cost, personal or pager number (a call back costs more than a national call)"
    if check.reason == "not_uk":
        return "not a UK number"
    return "not a valid UK number"
