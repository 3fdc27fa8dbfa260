"""What happened on a call and when, seen from the customer's side.

Every event carries ``at`` (monotonic seconds) and is reported with ``t``: seconds since the
customer answered (negative before the answer; ``None`` when the call was never answered). The
2-second rule is measured from the answer to the first moment the customer either has a person on
the line (``person_connected``) or hears something (``say_start`` / ``play_start``):
:func:`seconds_to_person_or_speech`. :func:`speech_before_person` lists what was played before a
person was there (Ofcom: only the information message may be; a test asserts it is empty when an
agent is connected in time).

Event kinds (``leg`` says which leg: ``customer`` or ``agent`` / ``number``):

``ringing``, ``answered``, ``amd`` (``answered_by``), ``twiml`` (``url``), ``say_start`` /
``say_end`` (``text``), ``play_start`` / ``play_end`` (``url``), ``pause_start`` / ``pause_end``,
``dial`` (``to``), ``agent_ringing``, ``agent_answered``, ``agent_rejected``, ``agent_offline``,
``agent_no_answer`` (``device``: ``browser`` when a registered browser phone took part),
``agent_muted`` / ``agent_unmuted``, ``agent_device_gone`` (the browser stopped polling mid-call),
``person_connected`` (the bridge), ``bridge_ended``, ``recording`` (``sid``),
``redirect``, ``hangup`` (``by``: customer, agent, caller, dial, api, twiml, end-of-twiml,
application-error), ``bridge_ended`` (``by``: agent, caller, redirect, time-limit),
``ended`` (``status``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["SPEECH", "Timeline", "seconds_to_person_or_speech", "speech_before_person"]

SPEECH: Final = frozenset({"say_start", "play_start"})


@dataclass
class Timeline:
    created_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, leg: str = "customer", **detail: Any) -> None:
        now = time.monotonic()
        if kind == "answered" and leg == "customer" and self.answered_at is None:
            self.answered_at = now
        self.events.append({"kind": kind, "leg": leg, "at": now, **detail})

    def to_json(self) -> dict[str, Any]:
        events = [
            {
                **{k: v for k, v in e.items() if k != "at"},
                "t": None if self.answered_at is None else round(e["at"] - self.answered_at, 4),
                "elapsed": round(e["at"] - self.created_at, 4),
            }
            for e in self.events
        ]
        return {
            "answered": self.answered_at is not None,
            "events": events,
            "seconds_to_person_or_speech": seconds_to_person_or_speech(events),
            "speech_before_person": speech_before_person(events),
        }


def seconds_to_person_or_speech(events: list[dict[str, Any]]) -> float | None:
    """Seconds from the customer's answer to a person connected or the first speech (``t`` of the
    first such event), or None when neither happened (or the call was never answered)."""
    for e in events:
        if e.get("t") is not None and (e["kind"] == "person_connected" or e["kind"] in SPEECH):
            return float(e["t"])
    return None


def speech_before_person(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speech the customer heard before a person was connected (all of it when none ever was)."""
    heard: list[dict[str, Any]] = []
    for e in events:
        if e["kind"] == "person_connected":
            break
        if e["kind"] in SPEECH and e.get("leg", "customer") == "customer":
            heard.append(e)
    return heard
