"""What the people and phones at the far end do: customers by number, agent devices by identity.

A customer (an E.164 number) is scripted by a :class:`CustomerScript`; an agent's browser phone
(``client:agent-<id>``) by a :class:`DeviceScript` — until a real browser registers that identity
(``devices.py``), which then decides for itself. Tests set them per number / identity through the
control API; everything else follows the **demo rules** on the number's last digit (``make run``'s
demo data gives a realistic mix, and its banner lists them):

=========  ==========================================================================
last digit  behaviour
=========  ==========================================================================
``7``       rings for 3 s, then no-answer
``8``       busy (never rings)
``9``       a machine (voicemail) answers after 1 s; AMD says ``machine_start``;
            the machine hangs up 30 s after answering
other       a person answers after 1 s and hangs up after 600 s (AMD: ``human``)
=========  ==========================================================================

Devices with no script are registered and accept after 0.5 s (the demo agent picks up at once).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any, Final, Self

__all__ = [
    "AnsweredBy",
    "Behaviour",
    "CustomerScript",
    "DeviceAction",
    "DeviceScript",
    "Scripts",
    "SmsFate",
]


class Behaviour(StrEnum):
    ANSWER = "answer"  # a person answers
    MACHINE = "machine"  # voicemail answers
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"


class AnsweredBy(StrEnum):
    HUMAN = "human"
    MACHINE_START = "machine_start"
    MACHINE_END_BEEP = "machine_end_beep"
    MACHINE_END_SILENCE = "machine_end_silence"
    MACHINE_END_OTHER = "machine_end_other"
    FAX = "fax"
    UNKNOWN = "unknown"


class SmsFate(StrEnum):
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # status callback ``undelivered`` with ErrorCode 30003
    UNSUBSCRIBED = "unsubscribed"  # Messages.create refused with 21610, as after STOP


class DeviceAction(StrEnum):
    ACCEPT = "accept"  # accepts after ``accept_after_s``
    REJECT = "reject"  # rejects after ``accept_after_s`` (Twilio: DialCallStatus busy)
    IGNORE = "ignore"  # rings until the <Dial> timeout (no-answer)
    MANUAL = "manual"  # rings until the control API accepts or rejects it (a browser adapter)


@dataclass(frozen=True, slots=True)
class CustomerScript:
    """One number's behaviour. Times are seconds of real time."""

    behaviour: Behaviour = Behaviour.ANSWER
    answer_after_s: float = 1.0  # ringing → answer (or → no-answer / busy / failed)
    hangup_after_s: float | None = 600.0  # answer → the far end hangs up (None: never)
    answered_by: AnsweredBy | None = None  # AMD verdict; None: human, or machine_start for a machine
    amd_after_s: float = 0.5  # answer → AMD verdict
    sms: SmsFate = SmsFate.DELIVERED

    @property
    def amd_verdict(self) -> AnsweredBy:
        if self.answered_by is not None:
            return self.answered_by
        return AnsweredBy.MACHINE_START if self.behaviour is Behaviour.MACHINE else AnsweredBy.HUMAN

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Self | None = None) -> Self:
        return replace(base or cls(), **_known(cls, data))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeviceScript:
    """One agent device (a Twilio Client identity)."""

    registered: bool = True  # False: offline; a <Dial><Client> to it fails at once (no-answer)
    action: DeviceAction = DeviceAction.ACCEPT
    accept_after_s: float = 0.5  # incoming → accept / reject
    hangup_after_s: float | None = None  # bridged → the agent hangs up (None: the agent waits)

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Self | None = None) -> Self:
        return replace(base or cls(), **_known(cls, data))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ENUMS: Final[dict[str, type[StrEnum]]] = {
    "behaviour": Behaviour,
    "answered_by": AnsweredBy,
    "sms": SmsFate,
    "action": DeviceAction,
}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown script fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        enum = _ENUMS.get(key)
        out[key] = enum(value) if enum is not None and value is not None else value
    return out


DEMO_RULES: Final[dict[str, CustomerScript]] = {
    "7": CustomerScript(Behaviour.NO_ANSWER, answer_after_s=3.0),
    "8": CustomerScript(Behaviour.BUSY, answer_after_s=0.5),
    "9": CustomerScript(Behaviour.MACHINE, hangup_after_s=30.0),
}


class Scripts:
    """Per-number and per-identity overrides over the demo rules."""

    def __init__(self, *, demo_rules: bool = True) -> None:
        self.demo_rules = demo_rules
        self.customers: dict[str, CustomerScript] = {}
        self.devices: dict[str, DeviceScript] = {}
        self.default_customer = CustomerScript()
        self.default_device = DeviceScript()

    def customer(self, number: str) -> CustomerScript:
        if number in self.customers:
            return self.customers[number]
        if self.demo_rules and number[-1:] in DEMO_RULES:
            return DEMO_RULES[number[-1:]]
        return self.default_customer

    def device(self, identity: str) -> DeviceScript:
        return self.devices.get(identity, self.default_device)

    def reset(self) -> None:
        self.customers.clear()
        self.devices.clear()
        self.default_customer = CustomerScript()
        self.default_device = DeviceScript()
