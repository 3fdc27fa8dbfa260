"""Phone numbers in logs and error messages: only the last three digits ever leave the process.

Logs are shipped to places with wider access than the customer database, and Twilio's own error
messages quote the number they rejected ("The 'To' number +447700900123 is not a valid phone number").
So every number is masked where it is logged, and free text from Twilio is scrubbed before it
becomes part of a domain error (and from there a Temporal failure, visible in the Web UI).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_phone", "mask_phones_in"]

VISIBLE_DIGITS: Final = 3
# A run of 6+ digits, optionally with a leading + and the separators people type. Shorter runs
# (error codes such as 21211, HTTP statuses, durations) are not phone numbers and are left alone,
# and so are digits inside identifiers (a call sid is ``CA`` + hex, which often holds digit runs).
_PHONE_LIKE: Final = re.compile(r"(?<![A-Za-z0-9_])\+?\d(?:[\d\s().-]{4,}\d)(?![A-Za-z_])")


def mask_phone(number: str | None) -> str:
    """``+447700900123`` → ``+*********123``: every digit but the last three becomes ``*``.

    A value with three digits or fewer is masked completely, so that the function never returns a
    whole number, however short.
    """
    if not number:
        return ""
    digits = sum(ch.isdigit() for ch in number)
    keep = VISIBLE_DIGITS if digits > VISIBLE_DIGITS else 0
    seen = 0
    out: list[str] = []
    for ch in number:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_phones_in(text: str) -> str:
    """``text`` with every phone-number-like run masked by :func:`mask_phone`."""

    def _mask(match: re.Match[str]) -> str:
        run = match.group(0)
        if sum(ch.isdigit() for ch in run) < 6:
            return run
        return mask_phone(run)

    return _PHONE_LIKE.sub(_mask, text)
