"""Compliance gates: may we call this customer at ``now``, and if not, from when?

Every gate is a pure function of explicit inputs (``now`` is a parameter, UTC-aware) returning a
:class:`GateResult`. ``until`` is the earliest instant the gate opens again (UTC), or ``None`` when
the gate is open or will never open by the passage of time alone (do-not-call, opt-out).

Time rules, chosen to be exact and explainable:

* calling hours and "per day" use the customer's local calendar (Europe/London, so BST/GMT changes
  move the UTC instants, not the local hours);
* "per week" is a rolling 7 x 24 hours in absolute time; min gap and abandoned cooling-off too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

if TYPE_CHECKING:
    from dialler.config import Settings

__all__ = [
    "CallingRules",
    "ContactHistory",
    "GateResult",
    "Rule",
    "abandoned_cooloff",
    "calling_window",
    "do_not_call",
    "first_blocking",
    "max_attempts_per_day",
    "max_attempts_per_week",
    "min_gap",
    "next_allowed_slots",
    "number_in_call",
    "opted_out",
]

# Ofcom / UK practice: no marketing-style calls before 08:00 or after 21:00 local time.
EARLIEST_OPENING: Final = time(8, 0)
LATEST_CLOSING: Final = time(21, 0)
# Customers are UK-only (see phones.py), so their local time is UK time.
UK_TIMEZONES: Final = ("Europe/London",)
NATIONS: Final = ("ENG", "NIR", "SCT", "WLS")
# Not nations but calendars over them. ANY_NATION: closed on a bank holiday of any nation, for a
# customer whose nation we cannot tell (no or unreadable postcode): calling a Scot on 2 January is a
# breach of our policy, keeping an English customer off the phone one extra day is not, so the
# unknown case takes the stricter calendar. SOME_NATION: open if any nation is open; only for the
# shared pre-check before an agent is offered a call, which is always followed by the customer's own.
ANY_NATION: Final = "ANY"
SOME_NATION: Final = "SOME"
UK_SUBDIVISIONS: Final = (*NATIONS, ANY_NATION, SOME_NATION)
# Postcode areas (the letters before the first digit) of Scotland; Northern Ireland is BT. The rest of
# the UK areas are England or Wales, whose bank holidays are the same.
SCOTTISH_POSTCODE_AREAS: Final = frozenset(
    ("AB", "DD", "DG", "EH", "FK", "G", "HS", "IV", "KA", "KW", "KY", "ML", "PA", "PH", "TD", "ZE")
)
NORTHERN_IRISH_POSTCODE_AREAS: Final = frozenset(("BT",))
MAX_ATTEMPTS_PER_DAY_LIMIT: Final = 10
MAX_ATTEMPTS_PER_WEEK_LIMIT: Final = 30
MIN_GAP_BOUNDS: Final = (timedelta(minutes=15), timedelta(days=7))
# Ofcom's persistent-misuse policy: no repeat call for 72 h after an abandoned call.
ABANDONED_COOLOFF_BOUNDS: Final = (timedelta(hours=72), timedelta(days=30))
WEEK: Final = timedelta(days=7)
# A number with a call under way is asked about again this much later: when that call will end is
# not known, and a household is not rung on a second line while one of its members is on the first.
NUMBER_IN_CALL_RETRY: Final = timedelta(minutes=5)
# Longest run of closed days is a bank-holiday weekend plus Christmas (< 7 days); 21 is ample.
_SEARCH_DAYS: Final = 21


class Rule(StrEnum):
    # The customer's record (codes shared with the queue placement reasons).
    DECEASED = "deceased"
    DELETED = "deleted"
    DISABLED = "disabled"
    INACTIVE = "inactive"
    UNKNOWN_STATUS = "unknown_status"
    NO_CALLABLE_NUMBER = "no_callable_number"
    DO_NOT_CALL = "do_not_call"
    OPTED_OUT = "opted_out"
    NUMBER_IN_CALL = "number_in_call"
    ABANDONED_COOLOFF = "abandoned_cooloff"
    MAX_ATTEMPTS_PER_WEEK = "max_attempts_per_week"
    NUMBER_MAX_ATTEMPTS_PER_WEEK = "number_max_attempts_per_week"
    MAX_ATTEMPTS_PER_DAY = "max_attempts_per_day"
    NUMBER_MAX_ATTEMPTS_PER_DAY = "number_max_attempts_per_day"
    MIN_GAP = "min_gap"
    NUMBER_MIN_GAP = "number_min_gap"
    CALLING_WINDOW = "calling_window"
    VULNERABLE = "vulnerable_needs_trained_agent"


CALLABLE_USER_STATUSES: Final = ("active", "vulnerable")
# One wording per refusal, whichever path refuses (placement reasons, callbacks, dial, SMS).
RECORD_REASONS: Final[dict[str, str]] = {
    Rule.DECEASED: "the customer is deceased: never called",
    Rule.DELETED: "the customer record is deleted",
    Rule.DISABLED: "the customer account is disabled",
    Rule.INACTIVE: "the customer is inactive",
    Rule.UNKNOWN_STATUS: "the customer status is not one we call",
}
DO_NOT_CALL_TEXT: Final = "the number is on the do-not-call list (TPS or request)"
OPTED_OUT_TEXT: Final = "the customer opted out (SMS STOP)"


@dataclass(frozen=True, slots=True)
class GateResult:
    allowed: bool
    rule: str
    explanation: str
    until: datetime | None = None


Hours = tuple[time, time]


@dataclass(frozen=True, slots=True)
class CallingRules:
    """Validated calling rules; build from settings with :meth:`from_settings`."""

    timezone: str = "Europe/London"
    weekday_hours: Hours = (time(8, 0), time(20, 0))
    saturday_hours: Hours | None = (time(9, 0), time(17, 0))
    holiday_country: str = "GB"
    holiday_subdiv: str = "ENG"
    max_attempts_per_day: int = 3
    max_attempts_per_week: int = 10
    min_gap: timedelta = timedelta(hours=4)
    abandoned_cooloff: timedelta = timedelta(hours=72)

    def __post_init__(self) -> None:
        if self.timezone not in UK_TIMEZONES:
            raise ValueError(f"calling timezone must be one of {UK_TIMEZONES}, got {self.timezone!r}")
        try:
            ZoneInfo(self.timezone)
        except ZoneInfoNotFoundError as exc:  # tzdata missing on the host
            raise ValueError(f"calling timezone {self.timezone!r} is not available") from exc
        _check_hours("weekday_hours", self.weekday_hours)
        if self.saturday_hours is not None:
            _check_hours("saturday_hours", self.saturday_hours)
        if self.holiday_country != "GB" or self.holiday_subdiv not in UK_SUBDIVISIONS:
            raise ValueError(
                f"bank holidays must be GB with a subdivision in {UK_SUBDIVISIONS}, "
                f"got {self.holiday_country!r}/{self.holiday_subdiv!r}"
            )
        _check_count("max_attempts_per_day", self.max_attempts_per_day, MAX_ATTEMPTS_PER_DAY_LIMIT)
        _check_count("max_attempts_per_week", self.max_attempts_per_week, MAX_ATTEMPTS_PER_WEEK_LIMIT)
        if self.max_attempts_per_week < self.max_attempts_per_day:
            raise ValueError("max_attempts_per_week must be >= max_attempts_per_day")
        _check_duration("min_gap", self.min_gap, *MIN_GAP_BOUNDS)
        _check_duration("abandoned_cooloff", self.abandoned_cooloff, *ABANDONED_COOLOFF_BOUNDS)

    @classmethod
    def from_settings(cls, settings: Settings, *, holiday_subdiv: str = "ENG") -> CallingRules:
        return cls(
            timezone=settings.calling_timezone,
            weekday_hours=_parse_hours("weekday_hours", settings.weekday_hours),
            saturday_hours=(
                None if settings.saturday_hours is None else _parse_hours("saturday_hours", settings.saturday_hours)
            ),
            holiday_subdiv=holiday_subdiv,
            max_attempts_per_day=settings.max_attempts_per_day,
            max_attempts_per_week=settings.max_attempts_per_week,
            min_gap=timedelta(seconds=settings.min_gap_between_attempts_s),
            abandoned_cooloff=timedelta(seconds=settings.abandoned_cooloff_s),
        )

    @property
    def summary(self) -> str:
        """The rules in one line, kept with each recorded decision."""
        saturday = "closed" if self.saturday_hours is None else _hours_text(self.saturday_hours)
        return (
            f"weekdays {_hours_text(self.weekday_hours)}, Saturdays {saturday} ({self.timezone}, the "
            f"customer's nation's bank holidays); {self.max_attempts_per_day}/day, "
            f"{self.max_attempts_per_week}/7 days, gap {self.min_gap}, after an abandoned call {self.abandoned_cooloff}"
        )

    @property
    def tz(self) -> ZoneInfo:
        # Not a field: keeps the dataclass plain data for Temporal payloads; ZoneInfo caches instances.
        return ZoneInfo(self.timezone)

    def for_nation(self, nation: str) -> CallingRules:
        """The same rules under ``nation``'s bank holidays (cached: placement asks per customer)."""
        return self if nation == self.holiday_subdiv else _for_nation(self, nation)

    def hours_on(self, day: date) -> Hours | None:
        """Local opening hours on ``day``, or None when we never call (Sunday, bank holiday)."""
        if day in bank_holidays(self.holiday_country, self.holiday_subdiv, day.year):
            return None
        weekday = day.weekday()
        if weekday < 5:
            return self.weekday_hours
        return self.saturday_hours if weekday == 5 else None


@lru_cache(maxsize=256)
def _for_nation(rules: CallingRules, nation: str) -> CallingRules:
    return replace(rules, holiday_subdiv=nation)


def _hours_text(hours: Hours) -> str:
    return f"{hours[0]:%H:%M}-{hours[1]:%H:%M}"


def _check_count(name: str, value: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise ValueError(f"{name} must be an integer between 1 and {high}, got {value!r}")


def _check_duration(name: str, value: timedelta, low: timedelta, high: timedelta) -> None:
    if not isinstance(value, timedelta) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")


def _check_hours(name: str, hours: Hours) -> None:
    opening, closing = hours
    if opening.tzinfo is not None or closing.tzinfo is not None:
        raise ValueError(f"{name} are local wall-clock times and must not carry a timezone")
    if not EARLIEST_OPENING <= opening < closing <= LATEST_CLOSING:
        raise ValueError(
            f"{name} must satisfy {EARLIEST_OPENING:%H:%M} <= opening < closing <= "
            f"{LATEST_CLOSING:%H:%M}, got {opening:%H:%M}-{closing:%H:%M}"
        )


def _parse_hours(name: str, raw: Sequence[str]) -> Hours:
    if len(raw) != 2:
        raise ValueError(f"{name} must be two 'HH:MM' strings, got {raw!r}")
    try:
        return time.fromisoformat(raw[0]), time.fromisoformat(raw[1])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be two 'HH:MM' strings, got {raw!r}") from exc


@lru_cache(maxsize=64)
def bank_holidays(country: str, subdiv: str, year: int) -> Mapping[date, str]:
    """Bank holidays (including substitute days) of one year; cached, as the batch asks 500k times.

    ``ANY``: a bank holiday in any nation (named after the nations that keep it); ``SOME``: a bank
    holiday in every nation."""
    if subdiv in (ANY_NATION, SOME_NATION):
        per_nation = {n: bank_holidays(country, n, year) for n in NATIONS}
        days: set[date] = set().union(*per_nation.values())
        found: dict[date, str] = {}
        for day in sorted(days):
            keeping = [n for n in NATIONS if day in per_nation[n]]
            if subdiv == SOME_NATION and len(keeping) < len(NATIONS):
                continue
            name = per_nation[keeping[0]][day]
            found[day] = name if len(keeping) == len(NATIONS) else f"{name} in {'/'.join(keeping)}"
        return found
    return dict(holidays.country_holidays(country, subdiv=subdiv, years=year).items())


def nation_of(postcode: str | None) -> str:
    """The bank-holiday calendar of a customer from their postcode's area: ``SCT``, ``NIR``, ``ENG``
    (England and Wales share theirs), or ``ANY`` when the postcode is missing or unreadable.

    No regex and no cache: the rebuild asks once per customer, with as many postcodes as customers."""
    code = (postcode or "").lstrip()[:3].upper()
    if len(code) >= 2 and code[0].isalpha() and code[1].isdigit():
        area = code[0]
    elif len(code) == 3 and code[:2].isalpha() and code[2].isdigit():
        area = code[:2]
    else:
        return ANY_NATION
    if area in SCOTTISH_POSTCODE_AREAS:
        return "SCT"
    if area in NORTHERN_IRISH_POSTCODE_AREAS:
        return "NIR"
    return "ENG"


@dataclass(frozen=True, slots=True)
class ContactHistory:
    """What the gates need to know about past calls to one customer (UTC-aware instants).

    ``attempts`` may come in any order; they are stored sorted ascending.
    """

    attempts: tuple[datetime, ...] = ()
    last_abandoned_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempts", tuple(sorted(utc(t, "attempt") for t in self.attempts)))
        if self.last_abandoned_at is not None:
            object.__setattr__(self, "last_abandoned_at", utc(self.last_abandoned_at, "last_abandoned_at"))

    @property
    def last_attempt_at(self) -> datetime | None:
        return self.attempts[-1] if self.attempts else None


def utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC; a naive datetime is refused (a wall-clock time of which zone?)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _fmt(instant: datetime, rules: CallingRules) -> str:
    return instant.astimezone(rules.tz).strftime("%a %d %b %Y %H:%M %Z")


# --- the gates ------------------------------------------------------------------------------------


def record_block(status: str, deleted: bool, enabled: bool, *, for_text: bool = False) -> Rule | None:
    """The first thing in the customer's record that rules out any contact, or None.

    Deceased first: it must win over everything, including a callback booked before. A text is
    refused only for a deceased or deleted customer (an inactive customer may still text us and be
    answered); a call needs an enabled account with a status we call."""
    # The replica's collation is case-insensitive, so 'Active' can exist there.
    status = status.strip().lower()
    if status == "deceased":
        return Rule.DECEASED
    if deleted:
        return Rule.DELETED
    if for_text:
        return None
    if not enabled:
        return Rule.DISABLED
    if status not in CALLABLE_USER_STATUSES:
        return Rule.INACTIVE if status == "inactive" else Rule.UNKNOWN_STATUS
    return None


# The open answers are the same for everyone: built once (placement asks 500k times per rebuild).
_RECORD_OPEN: Final = GateResult(True, "customer_record", "the customer's record allows contact")
_NOT_LISTED: Final = GateResult(True, Rule.DO_NOT_CALL, "not on the do-not-call list")
_NOT_OPTED_OUT: Final = GateResult(True, Rule.OPTED_OUT, "no opt-out")
_NUMBER_FREE: Final = GateResult(True, Rule.NUMBER_IN_CALL, "no other call to this number is under way")


def customer_record(status: str, deleted: bool, enabled: bool, *, for_text: bool = False) -> GateResult:
    blocked = record_block(status, deleted, enabled, for_text=for_text)
    if blocked is None:
        return _RECORD_OPEN
    return GateResult(False, blocked, RECORD_REASONS[blocked])


def do_not_call(listed: bool) -> GateResult:
    if listed:
        return GateResult(False, Rule.DO_NOT_CALL, DO_NOT_CALL_TEXT)
    return _NOT_LISTED


def opted_out(opted_out: bool) -> GateResult:
    if opted_out:
        return GateResult(False, Rule.OPTED_OUT, OPTED_OUT_TEXT)
    return _NOT_OPTED_OUT


def number_in_call(now: datetime, busy_until: datetime | None) -> GateResult:
    """Never two live calls to one number: while a call to it is under way (another customer who
    shares it, a household), the number is asked about again at ``busy_until``."""
    if busy_until is None or utc(now, "now") >= busy_until:
        return _NUMBER_FREE
    return GateResult(
        False, Rule.NUMBER_IN_CALL, "a call to this number is under way (a customer who shares it)", busy_until
    )


def vulnerable_agent(vulnerable: bool, agent_trained_vulnerable: bool) -> GateResult:
    """Vulnerable customers are only offered to agents trained to handle them (FCA FG21/1)."""
    if vulnerable and not agent_trained_vulnerable:
        return GateResult(
            False, Rule.VULNERABLE, "a vulnerable customer: only an agent trained for vulnerable customers may call"
        )
    return GateResult(True, Rule.VULNERABLE, "the agent may take this customer")


def agent_may_take(vulnerable: bool, agent_trained_vulnerable: bool) -> bool:
    return vulnerable_agent(vulnerable, agent_trained_vulnerable).allowed


def calling_window(now: datetime, rules: CallingRules) -> GateResult:
    now = utc(now, "now")
    local = now.astimezone(rules.tz)
    hours = rules.hours_on(local.date())
    if hours is not None and hours[0] <= local.time() < hours[1]:
        return GateResult(
            True,
            Rule.CALLING_WINDOW,
            f"{local:%a %H:%M} is within calling hours {hours[0]:%H:%M}-{hours[1]:%H:%M}",
        )
    opening = _next_opening(now, rules)
    return GateResult(
        False,
        Rule.CALLING_WINDOW,
        f"{_closed_because(local, hours, rules)}; calls resume {_fmt(opening, rules)}",
        opening,
    )


def _closed_because(local: datetime, hours: Hours | None, rules: CallingRules) -> str:
    day = local.date()
    if hours is not None:
        when = "before opening" if local.time() < hours[0] else "after closing"
        return f"{local:%a %H:%M} is {when} ({hours[0]:%H:%M}-{hours[1]:%H:%M})"
    name = bank_holidays(rules.holiday_country, rules.holiday_subdiv, day.year).get(day)
    if name is not None:
        return f"{day:%a %d %b} is a bank holiday ({name})"
    return f"no calls on {day:%A}s"


def _next_opening(now: datetime, rules: CallingRules) -> datetime:
    """The first opening instant strictly after ``now`` (or today's, if we are before it)."""
    today = now.astimezone(rules.tz).date()
    for offset in range(_SEARCH_DAYS):
        day = today + timedelta(days=offset)
        hours = rules.hours_on(day)
        if hours is None:
            continue
        # Openings are bounded to 08:00-21:00, never inside a UK DST gap or fold, so combine() is exact.
        opening = datetime.combine(day, hours[0], tzinfo=rules.tz).astimezone(UTC)
        if opening > now:
            return opening
    raise RuntimeError(f"no calling day within {_SEARCH_DAYS} days of {now.isoformat()}")


def _local_midnight_after(now: datetime, rules: CallingRules) -> datetime:
    tomorrow = now.astimezone(rules.tz).date() + timedelta(days=1)
    # Fine for Europe/London: transitions happen at 01:00/02:00, never at midnight.
    return datetime.combine(tomorrow, time(0), tzinfo=rules.tz).astimezone(UTC)


def max_attempts_per_day(now: datetime, history: ContactHistory, rules: CallingRules) -> GateResult:
    """At most N attempts per local calendar day; reopens at the next local midnight."""
    now = utc(now, "now")
    today = now.astimezone(rules.tz).date()
    count = sum(1 for t in history.attempts if t.astimezone(rules.tz).date() == today)
    limit = rules.max_attempts_per_day
    if count < limit:
        return GateResult(True, Rule.MAX_ATTEMPTS_PER_DAY, f"{count} of {limit} attempts today")
    until = _local_midnight_after(now, rules)
    return GateResult(
        False,
        Rule.MAX_ATTEMPTS_PER_DAY,
        f"{count} of {limit} attempts already made today; the count resets {_fmt(until, rules)}",
        until,
    )


def max_attempts_per_week(now: datetime, history: ContactHistory, rules: CallingRules) -> GateResult:
    """At most N attempts in any rolling 7 x 24 h; an attempt at t stops counting at t + 7 days."""
    now = utc(now, "now")
    recent = [t for t in history.attempts if t > now - WEEK]  # sorted, as attempts are
    limit = rules.max_attempts_per_week
    if len(recent) < limit:
        return GateResult(True, Rule.MAX_ATTEMPTS_PER_WEEK, f"{len(recent)} of {limit} attempts in 7 days")
    # Open again once len(recent) - limit + 1 of the oldest have aged out.
    until = recent[len(recent) - limit] + WEEK
    return GateResult(
        False,
        Rule.MAX_ATTEMPTS_PER_WEEK,
        f"{len(recent)} of {limit} attempts in the last 7 days; next allowed {_fmt(until, rules)}",
        until,
    )


def min_gap(now: datetime, history: ContactHistory, rules: CallingRules) -> GateResult:
    now = utc(now, "now")
    last = history.last_attempt_at
    if last is None or now >= last + rules.min_gap:
        return GateResult(True, Rule.MIN_GAP, f"at least {rules.min_gap} since the last attempt")
    until = last + rules.min_gap
    return GateResult(
        False,
        Rule.MIN_GAP,
        f"last attempt {_fmt(last, rules)}; wait {rules.min_gap} until {_fmt(until, rules)}",
        until,
    )


def abandoned_cooloff(now: datetime, history: ContactHistory, rules: CallingRules) -> GateResult:
    now = utc(now, "now")
    last = history.last_abandoned_at
    if last is None or now >= last + rules.abandoned_cooloff:
        return GateResult(True, Rule.ABANDONED_COOLOFF, "no abandoned call in the cooling-off period")
    until = last + rules.abandoned_cooloff
    return GateResult(
        False,
        Rule.ABANDONED_COOLOFF,
        f"abandoned call {_fmt(last, rules)}; no call until {_fmt(until, rules)}",
        until,
    )


# --- combining the gates: dialler.compliance.gate.check, the one decision ---------------------------


def first_blocking(results: Iterable[GateResult]) -> GateResult | None:
    """The first closed gate in the given order (most severe first), or None if all are open."""
    return next((r for r in results if not r.allowed), None)


MAX_SLOTS: Final = 2000


def next_allowed_slots(start: datetime, rules: CallingRules, count: int, step_minutes: int = 15) -> list[datetime]:
    """``count`` bookable callback times (UTC) at or after ``start``, inside calling hours.

    Slots sit on a ``step_minutes`` grid of local wall-clock time (14:00, 14:15, ...), start within
    the day's hours (a 19:45 slot is fine with a 20:00 close), and skip Sundays and bank holidays.
    """
    if not 0 <= count <= MAX_SLOTS:
        raise ValueError(f"count must be between 0 and {MAX_SLOTS}, got {count}")
    if not 1 <= step_minutes <= 240:
        raise ValueError(f"step_minutes must be between 1 and 240, got {step_minutes}")
    slots: list[datetime] = []
    at = _align_up(utc(start, "start"), rules, step_minutes)
    while len(slots) < count:
        window = calling_window(at, rules)
        if window.allowed:
            slots.append(at)
            at = _align_up(at + timedelta(minutes=step_minutes), rules, step_minutes)
        else:
            assert window.until is not None  # the calling window always reopens
            at = _align_up(window.until, rules, step_minutes)
    return slots


def _align_up(instant: datetime, rules: CallingRules, step_minutes: int) -> datetime:
    """The first instant >= ``instant`` whose local time is a whole multiple of the step after midnight."""
    local = instant.astimezone(rules.tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(minutes=step_minutes)
    elapsed = local.replace(tzinfo=None) - midnight.replace(tzinfo=None)  # wall-clock elapsed
    steps = -(-elapsed // step)  # ceiling division of timedeltas
    aligned_wall = midnight.replace(tzinfo=None) + steps * step
    return aligned_wall.replace(tzinfo=rules.tz).astimezone(UTC)
