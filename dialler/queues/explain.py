"""Why a customer is where they are: queue and score, or why not and until when (which rule).

Carries codes and instants, never the phone number, so an explanation can be logged, shown to a
supervisor, or returned from a workflow query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dialler.compliance.gates import GateResult, first_blocking
from dialler.queues.eligibility import CustomerFacts, Placement, QueueName

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    user_id: int
    queue: QueueName | None
    score: float | None
    callable_now: bool
    # A placement reason code (e.g. "no_active_claim") or the gate rule that holds longest.
    blocking_rule: str | None
    # When a time-based block lifts (UTC); None when callable now or when time alone will not help.
    until: datetime | None
    vulnerable: bool
    reasons: tuple[str, ...]
    # Why not now: the reasons that keep the customer from being called now (empty: callable now).
    gate_reasons: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        if self.queue is None:
            return f"user {self.user_id}: not queued ({self.blocking_rule})"
        where = f"user {self.user_id}: in {self.queue} at score {self.score:.0f}"
        if self.callable_now:
            return f"{where}, callable now"
        when = "no time given" if self.until is None else f"until {self.until.isoformat()}"
        return f"{where}, blocked by {self.blocking_rule} {when}"


def explain(
    facts: CustomerFacts,
    placement: Placement,
    gate_results: Sequence[GateResult],
    score: float | None,
    *,
    next_allowed_at: datetime | None = None,
) -> Explanation:
    """Combine eligibility, gates and score into one explanation.

    ``next_allowed_at`` (the gate's :attr:`dialler.compliance.gate.Decision.next_allowed_at`) is the exact time all
    gates open together; without it ``until`` is the latest ``until`` of the closed gates, a lower
    bound (a gap ending at 21:00 still waits for the next morning's window).
    """
    if placement.queue is None:
        return Explanation(
            user_id=facts.user_id,
            queue=None,
            score=None,
            callable_now=False,
            blocking_rule=placement.reason,
            until=None,
            vulnerable=placement.vulnerable,
            reasons=(f"{placement.reason}: {placement.reason_text}",),
            gate_reasons=(f"{placement.reason}: {placement.reason_text}",),
        )
    reasons = [f"{placement.reason}: {placement.reason_text}"]
    if score is not None:
        reasons.append(f"score {score:.0f} (lower is called sooner)")
    if placement.vulnerable:
        reasons.append("vulnerable: only agents trained for vulnerable customers may take the call")
    blocked = [r for r in gate_results if not r.allowed]
    why_not = [f"{r.rule}: {r.explanation}" for r in blocked]
    reasons.extend(why_not)
    blocking = _binding(blocked)
    until: datetime | None = None
    if blocking is not None and blocking.until is not None:
        until = blocking.until
        if next_allowed_at is not None and next_allowed_at > until:
            reasons.append(f"then the other gates hold it until {next_allowed_at.isoformat()}")
            why_not.append(reasons[-1])
            until = next_allowed_at
    return Explanation(
        user_id=facts.user_id,
        queue=placement.queue,
        score=score,
        callable_now=not blocked,
        blocking_rule=None if blocking is None else blocking.rule,
        until=until,
        vulnerable=placement.vulnerable,
        reasons=tuple(reasons),
        gate_reasons=tuple(why_not),
    )


def _binding(blocked: Sequence[GateResult]) -> GateResult | None:
    """The gate that holds longest: a permanent one (most severe first), else the latest ``until``."""
    permanent = first_blocking(r for r in blocked if r.until is None)
    if permanent is not None or not blocked:
        return permanent
    # max() keeps the first of equal untils, i.e. the more severe rule in the gate's order.
    return max(blocked, key=lambda r: r.until or datetime.min)
