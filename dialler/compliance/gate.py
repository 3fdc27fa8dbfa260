"""The compliance gate: may we call (or text) this customer on this number at this time?

One decision for every path that contacts a customer: queue placement (rebuild, change data capture,
outcomes), callback preparation and due checks, the last check before each dial, and every text.
Pure: it sees only :class:`ContactFacts` (loaded by :mod:`dialler.compliance.facts`, or built from
the rebuild's set-based reads) and the time, and answers with a :class:`Decision` carrying every
rule checked, every reason and the next allowed time.

The rules, in the order they are checked (the first closed one is the one a person is told):

voice: the customer's record (deceased, deleted, disabled, inactive) → a callable number →
do-not-call → opt-out → no other call to the number under way → 72 h after an abandoned call to the
number → attempts per rolling week, per customer and per number → attempts per local day, per
customer and per number → the minimum gap, per customer and per number → calling hours under the
customer's nation's bank holidays → a vulnerable customer only to a trained agent (when the agent is
known).

sms: the customer's record (deceased, deleted) → opt-out → do-not-call. The STOP confirmation is the
one text an opted-out number gets.

A booked callback is a call the customer asked for at that time: the attempt limits and the gap give
way to it; the abandoned-call cool-off (Ofcom), a call under way to the number and everything else
do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Final

from dialler.compliance import gates
from dialler.compliance.gates import CallingRules, ContactHistory, GateResult, Rule

__all__ = ["Channel", "ContactFacts", "Decision", "check", "shared_hours"]

_FIXED_POINT_STEPS: Final = 32


class Channel(StrEnum):
    VOICE = "voice"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """Everything the gate needs about one customer and the number we would use (UTC-aware instants).

    ``user_id`` is None for a number no customer has (a text to an unknown number). The phone number
    is here to be looked up, never to be recorded: a :class:`Decision` does not carry it."""

    user_id: int | None
    phone_e164: str | None
    status: str = "active"
    deleted: bool = False
    enabled: bool = True
    postcode: str | None = None
    phone_problem: str | None = None  # why there is no callable number (a phones.PHONE_REASONS text)
    do_not_call: bool = False
    opted_out: bool = False
    attempts: tuple[datetime, ...] = ()  # voice attempts to this customer, last 7 days
    number_attempts: tuple[datetime, ...] = ()  # voice attempts to this number, any customer, last 7 days
    last_abandoned_at: datetime | None = None  # the last abandoned call to this number
    booked_callback: bool = False  # the customer asked to be called at this time
    versions: Mapping[str, object] = field(default_factory=dict)  # which facts: row versions, counts
    flagged_vulnerable: bool = False  # the dialler's own vulnerable flag (customer_flags)
    # Another session's call to this number is under way (dialled, not ended): not rung before this.
    number_busy_until: datetime | None = None

    @property
    def vulnerable(self) -> bool:
        """The replica's status or the dialler's flag: an agent's flag holds until the desk clears it,
        whatever the main app says."""
        return self.flagged_vulnerable or self.status.strip().lower() == "vulnerable"

    @property
    def nation(self) -> str:
        return gates.nation_of(self.postcode)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    channel: str
    at: datetime
    checks: tuple[GateResult, ...]
    """Every rule checked, in order, open or closed."""
    next_allowed_at: datetime | None
    """``at`` when allowed; the earliest instant every rule opens together; None when time alone
    will never open the gate (do-not-call, deceased, ...)."""
    versions: Mapping[str, object] = field(default_factory=dict)

    @property
    def blocking(self) -> GateResult | None:
        return next((c for c in self.checks if not c.allowed), None)

    @property
    def permanent(self) -> bool:
        """Closed by a rule that time alone will not open."""
        return any(not c.allowed and c.until is None for c in self.checks)

    @property
    def rules_checked(self) -> tuple[str, ...]:
        return tuple(str(c.rule) for c in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per closed rule ("rule: why"); empty when allowed."""
        return tuple(f"{c.rule}: {c.explanation}" for c in self.checks if not c.allowed)

    @property
    def summary(self) -> str:
        blocking = self.blocking
        if blocking is None:
            return "allowed"
        if self.next_allowed_at is None:
            return f"not allowed: {blocking.explanation}"
        return f"not allowed now: {blocking.explanation}; next allowed at {self.next_allowed_at.isoformat()}"

    def as_record(self) -> dict[str, object]:
        """The decision as plain data (no personal data): what the decision log stores."""
        return {
            "allowed": self.allowed,
            "channel": self.channel,
            "at": self.at.isoformat(),
            "rules_checked": list(self.rules_checked),
            "reasons": list(self.reasons),
            "blocking_rule": None if self.blocking is None else str(self.blocking.rule),
            "next_allowed_at": None if self.next_allowed_at is None else self.next_allowed_at.isoformat(),
            "versions": dict(self.versions),
        }


def check(
    facts: ContactFacts,
    *,
    channel: Channel | str,
    at: datetime,
    rules: CallingRules,
    agent_trained_vulnerable: bool | None = None,
    shared_window: bool = True,
    stop_confirmation: bool = False,
) -> Decision:
    """The gate's answer for ``facts`` at ``at``.

    ``agent_trained_vulnerable``: the agent who would call (None: not known yet; the queue keeps a
    vulnerable customer for trained agents). ``shared_window=False`` (queue placement only) leaves
    out the calling hours every customer shares (the next-call path checks those when an agent asks)
    and keeps only a closure of the customer's own nation (a Scottish bank holiday for a Scot).
    ``stop_confirmation``: the text confirming a STOP, the one text an opted-out number gets."""
    channel = Channel(channel)
    at = gates.utc(at, "at")
    if channel is Channel.SMS:
        checks = _sms_checks(facts, stop_confirmation)
        allowed = all(c.allowed for c in checks)
        return Decision(allowed, channel, at, checks, at if allowed else None, facts.versions)
    checks = _voice_checks(facts, at, rules, agent_trained_vulnerable, shared_window)
    if all(c.allowed for c in checks):
        return Decision(True, channel, at, checks, at, facts.versions)
    return Decision(False, channel, at, checks, _next_allowed(facts, at, checks, rules, shared_window), facts.versions)


def shared_hours(at: datetime, rules: CallingRules) -> GateResult:
    """The calling hours as far as they are everyone's: open when some nation may be called now.

    The cheap pre-check before an agent is offered anyone; the customer offered is then checked in
    full (their own nation's holidays included) before the dial."""
    return _window(at.astimezone(UTC), rules.for_nation(gates.SOME_NATION))


def _sms_checks(facts: ContactFacts, stop_confirmation: bool) -> tuple[GateResult, ...]:
    if stop_confirmation:
        return (GateResult(True, "stop_confirmation", "the STOP confirmation: the one text an opted-out number gets"),)
    checks: list[GateResult] = []
    if facts.user_id is not None:
        checks.append(gates.customer_record(facts.status, facts.deleted, facts.enabled, for_text=True))
    checks += [gates.opted_out(facts.opted_out), gates.do_not_call(facts.do_not_call)]
    return tuple(checks)


def _voice_checks(
    facts: ContactFacts, at: datetime, rules: CallingRules, trained: bool | None, shared_window: bool
) -> tuple[GateResult, ...]:
    checks = [gates.customer_record(facts.status, facts.deleted, facts.enabled)]
    if facts.phone_e164 is None:
        problem = facts.phone_problem or "no phone number"
        checks.append(GateResult(False, Rule.NO_CALLABLE_NUMBER, f"no callable phone number: {problem}"))
    checks += [
        gates.do_not_call(facts.do_not_call),
        gates.opted_out(facts.opted_out),
        gates.number_in_call(at, facts.number_busy_until),
    ]
    if facts.booked_callback or not (facts.attempts or facts.number_attempts or facts.last_abandoned_at):
        # Nothing in the history can close a limit: the open answers are the same for everyone (the
        # rebuild's common case, 500k times; built once per rules).
        if facts.last_abandoned_at is None:
            checks.append(_no_abandoned_call(rules))
        else:
            checks.append(gates.abandoned_cooloff(at, ContactHistory((), facts.last_abandoned_at), rules))
        checks += _open_history_checks(rules)
    else:
        customer = ContactHistory(facts.attempts, facts.last_abandoned_at)
        number = ContactHistory(facts.number_attempts)
        checks += [
            gates.abandoned_cooloff(at, customer, rules),
            gates.max_attempts_per_week(at, customer, rules),
            _on_number(gates.max_attempts_per_week(at, number, rules)),
            gates.max_attempts_per_day(at, customer, rules),
            _on_number(gates.max_attempts_per_day(at, number, rules)),
            gates.min_gap(at, customer, rules),
            _on_number(gates.min_gap(at, number, rules)),
        ]
    nation = facts.nation
    if shared_window:
        checks.append(_window(at, rules.for_nation(nation)))
    else:
        checks.append(_nation_hold(at, rules, nation))
    if trained is not None:
        checks.append(gates.vulnerable_agent(facts.vulnerable, trained))
    return tuple(checks)


_NUMBER_RULE: Final = {
    Rule.MAX_ATTEMPTS_PER_WEEK: Rule.NUMBER_MAX_ATTEMPTS_PER_WEEK,
    Rule.MAX_ATTEMPTS_PER_DAY: Rule.NUMBER_MAX_ATTEMPTS_PER_DAY,
    Rule.MIN_GAP: Rule.NUMBER_MIN_GAP,
}


def _on_number(result: GateResult) -> GateResult:
    """A per-customer rule applied to the number's attempts (any customer who has it)."""
    return GateResult(
        result.allowed, _NUMBER_RULE[Rule(result.rule)], f"on this number: {result.explanation}", result.until
    )


@lru_cache(maxsize=8)
def _no_abandoned_call(rules: CallingRules) -> GateResult:
    return gates.abandoned_cooloff(datetime(2000, 1, 1, tzinfo=UTC), ContactHistory(), rules)


@lru_cache(maxsize=8)
def _open_history_checks(rules: CallingRules) -> tuple[GateResult, ...]:
    now = datetime(2000, 1, 1, tzinfo=UTC)  # any instant: with no history these do not depend on it
    empty = ContactHistory()
    return (
        gates.max_attempts_per_week(now, empty, rules),
        _on_number(gates.max_attempts_per_week(now, empty, rules)),
        GateResult(True, Rule.MAX_ATTEMPTS_PER_DAY, f"0 of {rules.max_attempts_per_day} attempts today"),
        _on_number(GateResult(True, Rule.MAX_ATTEMPTS_PER_DAY, f"0 of {rules.max_attempts_per_day} attempts today")),
        gates.min_gap(now, empty, rules),
        _on_number(gates.min_gap(now, empty, rules)),
    )


@lru_cache(maxsize=64)
def _window(at: datetime, rules: CallingRules) -> GateResult:
    # Cached: a rebuild asks for the same instant for every customer of a nation.
    return gates.calling_window(at, rules)


@lru_cache(maxsize=64)
def _nation_hold(at: datetime, rules: CallingRules, nation: str) -> GateResult:
    """The calling hours as far as they are this customer's own: closed only when the nation's
    calendar is closed and the shared one (any nation open) is open or reopens sooner."""
    own = gates.calling_window(at, rules.for_nation(nation))
    if own.allowed:
        return own
    shared = gates.calling_window(at, rules.for_nation(gates.SOME_NATION))
    if shared.allowed or (shared.until is not None and own.until is not None and own.until > shared.until):
        return own
    return GateResult(True, Rule.CALLING_WINDOW, "calling hours are checked when an agent asks for a call")


def _next_allowed(
    facts: ContactFacts, at: datetime, checks: tuple[GateResult, ...], rules: CallingRules, shared_window: bool
) -> datetime | None:
    """Jump to the latest reopening of the closed rules and ask again there, until nothing is closed
    (a gap ending at 21:30 lands outside the hours, which move it to the next morning)."""
    when = at
    for _ in range(_FIXED_POINT_STEPS):
        blocked = [c for c in checks if not c.allowed and c.rule != Rule.VULNERABLE]
        if not blocked:
            return when
        if any(c.until is None for c in blocked):
            return None
        later = max(c.until for c in blocked if c.until is not None)
        if later <= when:  # a rule claiming to open in the past would loop forever: a bug, say so
            raise RuntimeError(f"rule {blocked[0].rule} is closed at {when.isoformat()} but opens at {later}")
        when = later
        checks = _voice_checks(facts, when, rules, None, shared_window)
    raise RuntimeError(f"no fixed point after {_FIXED_POINT_STEPS} steps from {at.isoformat()}")
