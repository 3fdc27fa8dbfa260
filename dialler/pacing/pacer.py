"""One tick of a queue's pacer, as a pure function: the governor on the 24 h rate, then the plan.

``PacingWorkflow`` calls :func:`decide` on each snapshot of the floor (and ``bench/pacing_sim.py``
calls the same :func:`~dialler.pacing.predictive.govern` and
:func:`~dialler.pacing.predictive.plan_calls`), so what the board shows is exactly what was dialled.

Progressive calls are each reserved for one ready agent (the longest idle first): the agent is held
while it rings. Predictive calls are *pooled*: no agent is held while they ring, and the customer who
answers is bridged to whichever ready agent is claimed at the answer (``QueueEngine.claim``); with
none free within 2 s the call is abandoned on the one abandoned-call path (information message,
counted, 72 h lock). So the floor the pacer sees counts pooled calls as ``in_flight`` and the ready
agents as free: :func:`plan_calls` places the extra calls the answer rate allows on top.
"""

from __future__ import annotations

from dialler.pacing.messages import PacingDecision, PacingSnapshot
from dialler.pacing.predictive import (
    LOOSEN_UNDER,
    TARGET_SHARE,
    Floor,
    PacingMode,
    adapt_margin,
    govern,
    plan_calls,
)

__all__ = ["decide", "next_margin"]

# With a ceiling of 0 ("any abandoned call pauses") and no drop yet, the governor would pause at
# 0 ≥ 0: no drop, no pause (as dialler.pacing.abandon_rate.verdict), so the bound is a hair above 0.
_NO_DROP_CEILING = 1e-9


def decide(snapshot: PacingSnapshot, *, margin: float) -> PacingDecision:
    requested = PacingMode(snapshot.mode)
    rate = snapshot.rate or 0.0
    ceiling = snapshot.ceiling
    if snapshot.abandoned == 0 and ceiling <= 0:
        ceiling = _NO_DROP_CEILING
    governed = govern(requested, rate=rate, ceiling=ceiling)
    floor = Floor(
        ready=len(snapshot.ready_agents),
        in_flight=snapshot.in_flight,
        ringing_for_s=snapshot.ringing_for_s,
        wrapping_for_s=snapshot.wrapping_for_s,
        talking_for_s=snapshot.talking_for_s,
    )
    mode = PacingMode.PREVIEW if governed.paused else governed.mode
    plan = plan_calls(mode=mode, floor=floor, estimates=snapshot.estimates, margin=margin, max_ratio=snapshot.max_ratio)
    reserved: tuple[int, ...] = ()
    pooled = 0
    if mode == PacingMode.PROGRESSIVE:
        reserved = snapshot.ready_agents[: plan.calls]
    elif mode == PacingMode.PREDICTIVE:
        pooled = plan.calls
    return PacingDecision(
        queue=snapshot.queue,
        at=snapshot.at,
        requested=requested.value,
        governed=governed.mode.value,
        paused=governed.paused,
        reason=governed.reason,
        ratio=round(plan.ratio, 3),
        calls=len(reserved) + pooled,
        reserved_for=reserved,
        pooled=pooled,
        ready=floor.ready,
        in_flight=floor.in_flight,
        expected_free=round(plan.expected_free, 3),
        expected_answers=round(plan.expected_answers, 3),
        margin=margin,
        max_ratio=snapshot.max_ratio,
        rate=snapshot.rate,
        ceiling=snapshot.ceiling,
        answer_probability=round(snapshot.estimates.answer_probability, 4),
    )


def next_margin(snapshot: PacingSnapshot, *, margin: float, loosen_under: float = LOOSEN_UNDER) -> float:
    """The governor's feedback on the margin from the last hour, aiming at half the ceiling."""
    return adapt_margin(
        margin,
        recent_rate=snapshot.recent_rate,
        target_rate=TARGET_SHARE * snapshot.ceiling,
        answered=snapshot.recent_answered,
        loosen_under=loosen_under,
    )
