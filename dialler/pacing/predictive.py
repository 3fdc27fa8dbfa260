"""How many calls to place now: progressive and predictive pacing as pure functions.

The pacing workflow and the simulator (``bench/pacing_sim.py``) call the same functions, so what the
simulator measures is what the product does. Nothing here reads a clock or a store: the caller passes
a snapshot of the floor and the measured estimates.

Predictive dialling places more calls than there are ready agents because most calls are not
answered. The risk is the other side: more people answering than agents free to take them, and each
of those is an abandoned call (the information message, the 72 h lock, the rate Ofcom caps). So the
number of calls is chosen against the *distribution* of answers, not its mean: with ``N`` calls
ringing, each answered by a person with probability ``p``, answers ~ Binomial(N, p), and we place the
most calls for which ``mean + z·sd`` of the answers stays within the agents expected to be free when
they arrive. ``z`` is the safety margin the governor adapts from the measured abandoned rate
(:func:`adapt_margin`): a floor that abandons too often dials more carefully, one that abandons
nothing dials a little harder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class PacingMode(StrEnum):
    PREVIEW = "preview"  # agents choose and dial; the pacer places nothing
    PROGRESSIVE = "progressive"  # one call per ready agent, reserved for that agent
    PREDICTIVE = "predictive"  # more calls than ready agents, from the estimates below


# The safety margin's range, in standard deviations of the number of answers. At the floor the pacer
# still keeps a margin; at the ceiling it dials little more than progressive.
MARGIN_MIN = 0.5
MARGIN_MAX = 4.0
MARGIN_START = 3.0


@dataclass(frozen=True)
class Estimates:
    """Measured, decayed averages for a queue (and hour of day): what a placed call is likely to do."""

    answer_probability: float  # the call is answered and needs an agent: a person, or a machine the
    # carrier's detection does not hang up before the bridge
    ring_s: float  # mean time from the dial to an answer, for answered calls
    talk_s: float  # mean conversation
    wrap_s: float  # mean wrap-up after the call
    machine_probability: float = 0.0  # an answering machine answers (part of answer_probability
    # unless detection removes it before the bridge)


@dataclass(frozen=True)
class Floor:
    """The queue's floor at this moment, as the pacer sees it."""

    ready: int  # agents available, device registered and free, holding no call
    in_flight: int  # calls placed and not yet answered or ended
    ringing_for_s: tuple[float, ...] = ()  # for each call in flight: how long it has rung (if known)
    wrapping_for_s: tuple[float, ...] = ()  # for each agent in wrap-up: how long so far
    talking_for_s: tuple[float, ...] = ()  # for each agent on a call: how long so far


@dataclass(frozen=True)
class Plan:
    """The pacer's decision, with the numbers behind it (shown to supervisors)."""

    calls: int  # calls to place now
    expected_free: float  # agents expected free when the calls in flight and these are answered
    expected_answers: float  # people expected to answer, of everything ringing after this plan
    ratio: float  # calls ringing per expected free agent, after this plan
    margin: float  # the safety margin used, in standard deviations


def _survival(t: float, mean: float, cv: float) -> float:
    """P(T > t) for a log-normal T of this mean and coefficient of variation."""
    if t <= 0:
        return 1.0
    sigma = math.sqrt(math.log(1 + cv * cv))
    mu = math.log(max(mean, 1.0)) - sigma * sigma / 2
    return 0.5 * math.erfc((math.log(t) - mu) / (sigma * math.sqrt(2)))


def _ends_within(*, mean_s: float, cv: float, elapsed_s: float, horizon_s: float) -> float:
    """Probability that a state (log-normal length) already ``elapsed_s`` long ends within ``horizon_s``."""
    alive = _survival(elapsed_s, mean_s, cv)
    if alive <= 1e-12:
        return 1.0
    return 1.0 - _survival(elapsed_s + horizon_s, mean_s, cv) / alive


# How spread each state's length is around its mean (coefficient of variation): people pick up after
# a few rings, rarely at once; wrap-ups are fairly regular; conversations vary most.
RING_CV = 0.5
WRAP_CV = 0.4
TALK_CV = 0.75


def expected_free(floor: Floor, estimates: Estimates) -> float:
    """Agents expected free by the time a call placed now is answered: the ready ones, and those in
    wrap-up or on a call who are likely to have finished within one ring (an agent on a call still
    has a wrap-up to do after it, which is taken at its average)."""
    horizon = estimates.ring_s
    wrap, talk = estimates.wrap_s, estimates.talk_s
    free = float(floor.ready)
    free += sum(_ends_within(mean_s=wrap, cv=WRAP_CV, elapsed_s=e, horizon_s=horizon) for e in floor.wrapping_for_s)
    if horizon > wrap:
        free += sum(
            _ends_within(mean_s=talk, cv=TALK_CV, elapsed_s=e, horizon_s=horizon - wrap) for e in floor.talking_for_s
        )
    return free


def still_answers(p: float, ring_s: float, rung_s: float) -> float:
    """Probability that a call which has rung ``rung_s`` without an answer is still answered, when a
    fresh call is answered with probability ``p`` after a ring of mean ``ring_s`` (log-normal with
    :data:`RING_CV`): a call still ringing well past the usual answer is likely one nobody picks up."""
    if p <= 0 or rung_s <= 0:
        return p
    waiting = p * _survival(rung_s, ring_s, RING_CV)
    return waiting / (waiting + (1 - p))


def most_new_calls(*, free: float, p: float, margin: float, ringing: tuple[float, ...], limit: int) -> int:
    """The most new calls (each answered with probability ``p``) to add to the calls already ringing
    (each answered with its own probability) while the answers' ``mean + margin·sd`` stays within
    ``free`` agents. At most ``limit``."""
    mean = sum(ringing)
    var = sum(q * (1 - q) for q in ringing)
    n = 0
    while n < limit:
        m, v = mean + (n + 1) * p, var + (n + 1) * p * (1 - p)
        if m + margin * math.sqrt(v) > free:
            break
        n += 1
    return n


def plan_calls(
    *,
    mode: PacingMode,
    floor: Floor,
    estimates: Estimates,
    margin: float,
    max_ratio: float,
) -> Plan:
    """How many calls to place now.

    Progressive places one call per ready agent not already covered by a call in flight (each call is
    the agent's own, so nobody is abandoned unless the agent fails to accept). Predictive places
    :func:`most_new_calls` for the expected free agents, never fewer than progressive would and never
    more than ``max_ratio`` calls ringing per expected free agent."""
    if mode == PacingMode.PREVIEW:
        return Plan(0, float(floor.ready), 0.0, 0.0, margin)
    progressive = max(0, floor.ready - floor.in_flight)
    if mode == PacingMode.PROGRESSIVE:
        placed = floor.in_flight + progressive
        return Plan(progressive, float(floor.ready), placed * estimates.answer_probability, 1.0, margin)
    free = expected_free(floor, estimates)
    p = estimates.answer_probability
    # Calls whose ring time the caller knows count by their own chance; the rest as fresh ones.
    known = [still_answers(p, estimates.ring_s, t) for t in floor.ringing_for_s]
    ringing = tuple(known) + (p,) * max(0, floor.in_flight - len(known))
    limit = max(0, math.floor(max_ratio * free + 1e-9) - floor.in_flight)
    calls = max(progressive, most_new_calls(free=free, p=p, margin=margin, ringing=ringing, limit=limit))
    total = floor.in_flight + calls
    ratio = total / free if free > 0 else 0.0
    return Plan(calls, free, sum(ringing) + calls * p, ratio, margin)


# The margin loosens whenever the last hour abandoned less than this share of the target. 1.0: below
# the target at all. (It was 0.5, "well under the target"; agents who miss calls abandon ~0.3 % on
# their own, so against a 0.5 % target the margin only ever tightened and sat near MARGIN_MAX.)
LOOSEN_UNDER = 1.0
LOOSEN_UNDER_BEFORE_PATCH = 0.5  # what PacingWorkflow runs on histories recorded before the change


def adapt_margin(
    margin: float, *, recent_rate: float, target_rate: float, answered: int, loosen_under: float = LOOSEN_UNDER
) -> float:
    """The governor's feedback on the safety margin, from the abandoned rate over the last hour's
    ``answered`` live answers: above the target, dial more carefully at once, in proportion to the
    overshoot; under ``loosen_under`` × the target, loosen a little; otherwise hold. Too few answers
    say nothing."""
    if answered < 50:
        return margin
    if recent_rate > target_rate:
        overshoot = recent_rate / target_rate if target_rate > 0 else 4.0
        return min(MARGIN_MAX, margin + 0.25 * min(overshoot, 4.0))
    if recent_rate < target_rate * loosen_under:
        return max(MARGIN_MIN, margin - 0.1)
    return margin


# Predictive tapers to progressive when the rolling 24 h abandoned rate reaches this share of the
# ceiling, and the queue pauses at the ceiling itself; the margin aims at half the ceiling.
TAPER_FROM = 0.75
TARGET_SHARE = 0.5


@dataclass(frozen=True)
class Governed:
    """The mode the governor lets a queue dial in now, and why (``paused``: place nothing)."""

    mode: PacingMode
    paused: bool
    reason: str


def govern(requested: PacingMode, *, rate: float, ceiling: float) -> Governed:
    """The governor: the rolling 24 h abandoned rate against the queue's ceiling."""
    if requested == PacingMode.PREVIEW:
        return Governed(requested, False, "preview: agents dial")
    if rate >= ceiling:
        return Governed(requested, True, f"paused: abandoned {rate:.2%} in 24 h reached the ceiling {ceiling:.2%}")
    if requested == PacingMode.PREDICTIVE and rate >= TAPER_FROM * ceiling:
        return Governed(
            PacingMode.PROGRESSIVE,
            False,
            f"tapered to progressive: abandoned {rate:.2%} in 24 h is near the ceiling {ceiling:.2%}",
        )
    return Governed(requested, False, f"{requested.value}: abandoned {rate:.2%} in 24 h, ceiling {ceiling:.2%}")


# The configured starting value counts as this many calls: it steers a queue's first calls and is
# 2 % of the estimate after 500.
PRIOR_CALLS = 10


@dataclass
class DecayedMean:
    """An exponentially decayed mean: recent calls weigh more, so the estimates follow the list being
    dialled. ``weight`` is the decay per observation (0.02 ≈ the last 50 calls). Until there are
    ``1/weight`` observations it is the plain mean of them and the starting ``value`` (worth
    :data:`PRIOR_CALLS` observations): a fixed small weight over a few hundred calls would leave the
    starting value a third of the estimate however much was measured."""

    value: float
    weight: float = 0.02
    count: int = 0  # observations so far

    def observe(self, x: float) -> None:
        self.count += 1
        self.value += max(self.weight, 1.0 / (self.count + PRIOR_CALLS)) * (x - self.value)


def needs_agent(*, answered: bool, machine: bool, amd_on: bool) -> bool:
    """Whether an answered call counts as an answer for pacing: it takes an agent. Without
    answering-machine detection a machine is put through to an agent like a person and occupies
    them; with it, the machine is hung up on before the bridge."""
    return answered and (not machine or not amd_on)


@dataclass
class Estimator:
    """The queue's running estimates, fed by what each call did."""

    answer: DecayedMean
    machine: DecayedMean
    ring: DecayedMean
    talk: DecayedMean
    wrap: DecayedMean

    @classmethod
    def starting(cls, estimates: Estimates) -> Estimator:
        return cls(
            answer=DecayedMean(estimates.answer_probability, 0.002),
            machine=DecayedMean(estimates.machine_probability, 0.002),
            ring=DecayedMean(estimates.ring_s),
            talk=DecayedMean(estimates.talk_s),
            wrap=DecayedMean(estimates.wrap_s),
        )

    def dialled(self, *, person: bool, machine: bool, ring_s: float | None) -> None:
        """One dialled call: ``person`` if it was answered and needs an agent (:func:`needs_agent`)."""
        self.answer.observe(1.0 if person else 0.0)
        self.machine.observe(1.0 if machine else 0.0)
        if person and ring_s is not None:
            self.ring.observe(ring_s)

    def estimates(self) -> Estimates:
        return Estimates(
            answer_probability=self.answer.value,
            ring_s=self.ring.value,
            talk_s=self.talk.value,
            wrap_s=self.wrap.value,
            machine_probability=self.machine.value,
        )
