"""Ofcom's abandoned-call rate and the ceiling that pauses progressive dialling: pure rules.

Ofcom (persistent misuse, 2016): an abandoned call is a call a person answers that is not put
through to a live agent within 2 seconds; at most 3 % of live calls may be abandoned, per campaign
(here: per queue), over any 24 hours. With answering-machine detection (AMD) on, some dropped calls
were machines, not people, and Ofcom lets the rate discount them by a reasoned estimate. The estimate
used is VICIdial's (shared UK-RULES.md)::

    adjusted = drops − drops × AM / (human + AM)
    rate     = adjusted / (human + adjusted)

where ``human`` and ``AM`` are the answered calls an agent took that were a person / a machine: the
share of machines among the calls we could see is assumed for the drops we could not. Without AMD no
adjustment is made and ``rate = drops / (human + drops)``.

The ceiling is the firm's, never looser than the law: 1 % by default, settable per queue up to 3 %
and no further (:func:`validate_ceiling`). A queue whose rate has reached its ceiling has its
progressive dialling paused (:func:`verdict`); the reason names both numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from dialler.errors import Invalid
from dialler.pacing.errors import CeilingAboveOfcomLimit, ProgressivePaused

__all__ = [
    "DEFAULT_CEILING",
    "OFCOM_LIMIT",
    "WINDOW",
    "AbandonRate",
    "PacingState",
    "PacingVerdict",
    "RateInputs",
    "abandon_rate",
    "progressive_paused",
    "percent",
    "validate_ceiling",
    "verdict",
]

OFCOM_LIMIT: Final = Decimal("0.03")
"""Ofcom's maximum abandoned-call rate: a ceiling set above it would be a setting that loosens a rule."""
DEFAULT_CEILING: Final = Decimal("0.01")
"""The firm's ceiling when a queue has none set: well inside the law ("aim near zero")."""
WINDOW: Final = timedelta(hours=24)
"""Ofcom's period: any 24 hours, so a rolling window ending now."""


@dataclass(frozen=True)
class RateInputs:
    """What happened on a queue's calls within the window. Counts of calls, never who was called."""

    abandoned: int
    """Answered calls no agent was on within 2 s (the information message played): Ofcom's drops."""
    live_answered: int
    """Answered by a person and put through to an agent (not abandoned, not a machine)."""
    machine: int = 0
    """Answered by a machine: AMD's verdict, or an agent's ``voicemail`` outcome on an answered call."""
    amd_on: bool = False
    """Answering-machine detection was on: the drops are discounted for machines (Ofcom's adjustment)."""

    def __post_init__(self) -> None:
        if min(self.abandoned, self.live_answered, self.machine) < 0:
            raise ValueError("call counts cannot be negative")


@dataclass(frozen=True)
class AbandonRate:
    inputs: RateInputs
    machine_adjustment: float
    """Drops estimated to have been machines and left out (0 without AMD)."""
    adjusted_abandoned: float
    """Drops counted against the rate: ``abandoned − machine_adjustment``."""
    rate: float | None
    """Adjusted drops ÷ live calls (people agents took + adjusted drops); None with no live call at all."""


def abandon_rate(inputs: RateInputs) -> AbandonRate:
    """Ofcom's abandoned-call rate of ``inputs`` (see the module's formula).

    One case departs from the bare formula, towards strictness: when agents reached no person at all
    (``live_answered == 0``), the estimate would call every drop a machine and the rate 0/0. A sample
    with no person in it cannot support that, so no adjustment is made and every drop counts."""
    drops, human, machines = inputs.abandoned, inputs.live_answered, inputs.machine
    adjustment = 0.0
    if inputs.amd_on and human > 0 and machines > 0:
        adjustment = drops * machines / (human + machines)
    adjusted = drops - adjustment
    live = human + adjusted
    return AbandonRate(
        inputs=inputs,
        machine_adjustment=adjustment,
        adjusted_abandoned=adjusted,
        rate=(adjusted / live) if live > 0 else None,
    )


def percent(value: float | Decimal) -> str:
    """``0.0123`` → ``"1.23 %"`` (two decimals, trailing zeros dropped: ``"1 %"``)."""
    text = f"{float(value) * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


def validate_ceiling(value: Decimal | float | str) -> Decimal:
    """A queue's ceiling as asked: a fraction from 0 (any abandoned call pauses) to Ofcom's 3 %.
    Anything above 3 % is refused, never capped: the person setting it must know it did not apply."""
    try:
        ceiling = Decimal(str(value))
    except ArithmeticError:
        raise Invalid("The ceiling must be a number (a fraction: 0.01 is 1 %).") from None
    if not ceiling.is_finite() or ceiling < 0:
        raise Invalid("The ceiling must be a fraction from 0 to 0.03 (0 % to 3 %).", {"ceiling": str(value)})
    if ceiling > OFCOM_LIMIT:
        raise CeilingAboveOfcomLimit(
            f"The abandoned-call ceiling cannot be above {percent(OFCOM_LIMIT)} (Ofcom's limit over any 24 h);"
            f" {percent(ceiling)} was asked.",
            {"ceiling": str(ceiling), "limit": str(OFCOM_LIMIT)},
        )
    return ceiling.quantize(Decimal("0.0001"))


class PacingState(StrEnum):
    OPEN = "open"
    """Progressive dialling may run."""
    PAUSED = "paused"
    """Progressive dialling is stopped: the abandoned rate has reached the ceiling."""


@dataclass(frozen=True)
class PacingVerdict:
    queue: str
    state: PacingState
    rate: AbandonRate
    ceiling: Decimal
    reason: str | None
    """Why it is paused, to show to agents and supervisors (None when open)."""

    @property
    def paused(self) -> bool:
        return self.state is PacingState.PAUSED


def verdict(queue: str, rate: AbandonRate, ceiling: Decimal) -> PacingVerdict:
    """Paused once the rate reaches the ceiling (``rate ≥ ceiling``: at 1 % of a 1 % ceiling the next
    drop would breach it). No drop, no pause: a ceiling of 0 pauses on the first abandoned call."""
    value = rate.rate
    if value is None or rate.adjusted_abandoned <= 0 or value < float(ceiling):
        return PacingVerdict(queue=queue, state=PacingState.OPEN, rate=rate, ceiling=ceiling, reason=None)
    reason = f"Progressive paused: abandoned rate {percent(value)} ≥ ceiling {percent(ceiling)} (last 24 h)"
    return PacingVerdict(queue=queue, state=PacingState.PAUSED, rate=rate, ceiling=ceiling, reason=reason)


def progressive_paused(paused: list[PacingVerdict]) -> ProgressivePaused:
    """The refusal of a progressive call when every queue the agent works is paused."""
    if len(paused) == 1 and paused[0].reason:
        message = paused[0].reason
    else:
        message = "Progressive paused on every queue you work: " + "; ".join(
            f"{v.queue} abandoned rate {percent(v.rate.rate or 0.0)} ≥ ceiling {percent(v.ceiling)}" for v in paused
        )
    return ProgressivePaused(
        message,
        {
            "queues": [
                {
                    "queue": v.queue,
                    "rate": v.rate.rate,
                    "ceiling": float(v.ceiling),
                    "reason": v.reason,
                }
                for v in paused
            ]
        },
    )
