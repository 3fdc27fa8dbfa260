"""Ofcom's drama ranges: UK numbers reserved for TV, radio and film, never allocated to anyone.

One home for the list (Ofcom, "Telephone numbers for drama purposes"). A drama number is fine in seed
data and tests (it can never ring a real person) and never fine as the CLI we present to customers:
a call-back to it reaches nobody, which breaks General Condition C6.
"""

from __future__ import annotations

from typing import Final

# (national significant number prefix without the leading 0, first, last) of each 1000-number block.
RANGES: Final[tuple[tuple[str, int, int], ...]] = (
    ("1134960", 0, 999),  # Leeds 0113 496 0xxx
    ("1144960", 0, 999),  # Sheffield
    ("1154960", 0, 999),  # Nottingham
    ("1164960", 0, 999),  # Leicester
    ("1174960", 0, 999),  # Bristol
    ("1184960", 0, 999),  # Reading
    ("1214960", 0, 999),  # Birmingham
    ("1314960", 0, 999),  # Edinburgh
    ("1414960", 0, 999),  # Glasgow
    ("1514960", 0, 999),  # Liverpool
    ("1614960", 0, 999),  # Manchester
    ("1914980", 0, 999),  # Tyneside, Durham, Sunderland 0191 498 0xxx
    ("2079460", 0, 999),  # London 020 7946 0xxx
    ("2896496", 0, 999),  # Northern Ireland 028 9649 6xxx
    ("2920180", 0, 999),  # Cardiff 029 2018 0xxx
    ("1632960", 0, 999),  # no area 01632 960xxx
    ("7700900", 0, 999),  # mobile 07700 900xxx
    ("8081570", 0, 999),  # freephone 0808 157 0xxx
    ("9098790", 0, 999),  # premium rate 0909 879 0xxx
    ("3069990", 0, 999),  # UK-wide 0306 999 0xxx
)


def national_digits(number: str) -> str | None:
    """The UK national significant number (no leading 0 or +44) of a number as typed, or None."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip().startswith("+"):
        return digits[2:] if digits.startswith("44") else None
    if digits.startswith("0044"):
        return digits[4:]
    if digits.startswith("0"):
        return digits[1:]
    return digits


def is_drama_number(number: str) -> bool:
    """True when ``number`` (E.164 or national format) is in one of Ofcom's drama ranges."""
    nsn = national_digits(number)
    if nsn is None:
        return False
    for prefix, first, last in RANGES:
        rest = nsn[len(prefix) :]
        if nsn.startswith(prefix) and len(rest) == 3 and first <= int(rest) <= last:
            return True
    return False
