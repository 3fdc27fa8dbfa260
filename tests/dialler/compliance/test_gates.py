from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dialler.compliance.gate import ContactFacts, Decision, check
from dialler.compliance.gates import (
    CallingRules,
    ContactHistory,
    Rule,
    abandoned_cooloff,
    calling_window,
    do_not_call,
    first_blocking,
    max_attempts_per_day,
    max_attempts_per_week,
    min_gap,
    next_allowed_slots,
    opted_out,
)
from dialler.config import Settings

LONDON = ZoneInfo("Europe/London")
RULES = CallingRules()


def uk(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A London wall-clock time as a UTC instant (none of these fall in a DST gap or fold)."""
    return datetime(y, mo, d, h, mi, s, tzinfo=LONDON).astimezone(UTC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def history(*attempts: datetime, abandoned: datetime | None = None) -> ContactHistory:
    return ContactHistory(attempts=attempts, last_abandoned_at=abandoned)


def decide(now: datetime, hist: ContactHistory, *, listed_dnc: bool = False, opted_out: bool = False) -> Decision:
    """The gate's whole decision for an English customer with this history (no one else on the number)."""
    facts = ContactFacts(
        user_id=1,
        phone_e164="+447700900123",
        postcode="SW1A 1AA",
        do_not_call=listed_dnc,
        opted_out=opted_out,
        attempts=hist.attempts,
        last_abandoned_at=hist.last_abandoned_at,
    )
    return check(facts, channel="voice", at=now, rules=RULES)


# --- CallingRules ----------------------------------------------------------------------------------


def test_default_rules_match_the_default_settings() -> None:
    assert CallingRules.from_settings(Settings.model_construct()) == RULES
    assert RULES.weekday_hours == (time(8), time(20))
    assert RULES.saturday_hours == (time(9), time(17))
    assert RULES.holiday_subdiv == "ENG"
    assert (RULES.max_attempts_per_day, RULES.max_attempts_per_week) == (3, 10)
    assert (RULES.min_gap, RULES.abandoned_cooloff) == (timedelta(hours=4), timedelta(hours=72))


def test_from_settings_converts_every_field() -> None:
    settings = Settings.model_construct(
        weekday_hours=("09:30", "21:00"),
        saturday_hours=None,
        max_attempts_per_day=2,
        max_attempts_per_week=5,
        min_gap_between_attempts_s=1800,
        abandoned_cooloff_s=96 * 3600,
    )
    rules = CallingRules.from_settings(settings, holiday_subdiv="SCT")
    assert rules == CallingRules(
        weekday_hours=(time(9, 30), time(21)),
        saturday_hours=None,
        holiday_subdiv="SCT",
        max_attempts_per_day=2,
        max_attempts_per_week=5,
        min_gap=timedelta(minutes=30),
        abandoned_cooloff=timedelta(hours=96),
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weekday_hours": ("07:59", "20:00")}, "weekday_hours"),
        ({"weekday_hours": ("08:00", "21:01")}, "weekday_hours"),
        ({"weekday_hours": ("20:00", "08:00")}, "weekday_hours"),
        ({"weekday_hours": ("10:00", "10:00")}, "weekday_hours"),
        ({"weekday_hours": ("8am", "8pm")}, "HH:MM"),
        ({"weekday_hours": ("08:00",)}, "HH:MM"),
        ({"saturday_hours": ("07:00", "12:00")}, "saturday_hours"),
        ({"saturday_hours": ("09:00", "22:00")}, "saturday_hours"),
        ({"calling_timezone": "America/New_York"}, "timezone"),
        ({"calling_timezone": "Not/A_Zone"}, "timezone"),
        ({"max_attempts_per_day": 0}, "max_attempts_per_day"),
        ({"max_attempts_per_day": 11}, "max_attempts_per_day"),
        ({"max_attempts_per_week": 0}, "max_attempts_per_week"),
        ({"max_attempts_per_week": 31}, "max_attempts_per_week"),
        ({"max_attempts_per_day": 5, "max_attempts_per_week": 4}, "max_attempts_per_week must be >="),
        ({"min_gap_between_attempts_s": 14 * 60}, "min_gap"),
        ({"min_gap_between_attempts_s": 8 * 86400}, "min_gap"),
        ({"abandoned_cooloff_s": 71 * 3600}, "abandoned_cooloff"),
        ({"abandoned_cooloff_s": 31 * 86400}, "abandoned_cooloff"),
    ],
)
def test_from_settings_rejects_unsafe_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CallingRules.from_settings(Settings.model_construct(**overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"holiday_subdiv": "XXX"}, "subdivision"),
        ({"holiday_country": "FR"}, "GB"),
        ({"weekday_hours": (time(8, tzinfo=UTC), time(20))}, "timezone"),
        ({"max_attempts_per_day": True}, "max_attempts_per_day"),
        ({"min_gap": 3600}, "min_gap"),
    ],
)
def test_rules_reject_unsafe_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CallingRules(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"weekday_hours": (time(8), time(21))},  # the bounds themselves are allowed
        {"saturday_hours": None},
        {"max_attempts_per_day": 10, "max_attempts_per_week": 30},
        {"max_attempts_per_day": 1, "max_attempts_per_week": 1},
        {"min_gap": timedelta(minutes=15)},
        {"abandoned_cooloff": timedelta(hours=72)},
        {"holiday_subdiv": "NIR"},
    ],
)
def test_rules_accept_values_on_the_bounds(overrides: dict[str, Any]) -> None:
    CallingRules(**overrides)


# --- calling window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "opens_at"),
    [
        # weekday boundaries (June: BST)
        (uk(2026, 6, 8, 7, 59, 59), uk(2026, 6, 8, 8)),
        (uk(2026, 6, 8, 8), None),
        (uk(2026, 6, 8, 19, 59, 59), None),
        (uk(2026, 6, 8, 20), uk(2026, 6, 9, 8)),
        (uk(2026, 6, 8, 23, 30), uk(2026, 6, 9, 8)),
        (uk(2026, 6, 9, 0, 0), uk(2026, 6, 9, 8)),
        # Friday evening -> Saturday's later opening; Saturday limits; Sunday never
        (uk(2026, 6, 12, 20), uk(2026, 6, 13, 9)),
        (uk(2026, 6, 13, 8, 59), uk(2026, 6, 13, 9)),
        (uk(2026, 6, 13, 9), None),
        (uk(2026, 6, 13, 16, 59), None),
        (uk(2026, 6, 13, 17), uk(2026, 6, 15, 8)),
        (uk(2026, 6, 14, 12), uk(2026, 6, 15, 8)),
        # clocks go forward on Sun 29 Mar 2026: Friday 19:59 GMT is 19:59 UTC, Monday 08:00 BST is 07:00 UTC
        (utc(2026, 3, 27, 19, 59), None),
        (utc(2026, 3, 27, 20, 0), utc(2026, 3, 28, 9)),
        (utc(2026, 3, 28, 17, 0), utc(2026, 3, 30, 7)),
        (utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 7)),
        (utc(2026, 3, 30, 6, 59), utc(2026, 3, 30, 7)),
        (utc(2026, 3, 30, 7, 0), None),
        (utc(2026, 3, 30, 18, 59), None),
        (utc(2026, 3, 30, 19, 0), utc(2026, 3, 31, 7)),
        # clocks go back on Sun 25 Oct 2026: Saturday 17:00 BST is 16:00 UTC, Monday 08:00 GMT is 08:00 UTC
        (utc(2026, 10, 24, 15, 59), None),
        (utc(2026, 10, 24, 16, 0), utc(2026, 10, 26, 8)),
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 8)),
        (utc(2026, 10, 26, 7, 59), utc(2026, 10, 26, 8)),
        (utc(2026, 10, 26, 8, 0), None),
        # Easter 2026: Good Friday 3 Apr, Easter Monday 6 Apr
        (uk(2026, 4, 2, 20), uk(2026, 4, 4, 9)),
        (uk(2026, 4, 3, 10), uk(2026, 4, 4, 9)),
        (uk(2026, 4, 4, 17), uk(2026, 4, 7, 8)),
        (uk(2026, 4, 6, 10), uk(2026, 4, 7, 8)),
        # Christmas 2026: Fri 25, Sat 26 (Boxing Day), Sun 27, Mon 28 (Boxing Day substitute)
        (uk(2026, 12, 24, 19, 59), None),
        (uk(2026, 12, 24, 20), uk(2026, 12, 29, 8)),
        (uk(2026, 12, 26, 10), uk(2026, 12, 29, 8)),
        (uk(2026, 12, 28, 10), uk(2026, 12, 29, 8)),
        # New Year across the year boundary: Fri 1 Jan 2027 is a holiday, Saturday opens at 09:00
        (uk(2026, 12, 31, 20), uk(2027, 1, 2, 9)),
        (uk(2027, 1, 1, 12), uk(2027, 1, 2, 9)),
        # Spring and late-summer bank holidays
        (uk(2026, 5, 25, 12), uk(2026, 5, 26, 8)),
        (uk(2026, 8, 31, 12), uk(2026, 9, 1, 8)),
    ],
)
def test_calling_window(now: datetime, opens_at: datetime | None) -> None:
    result = calling_window(now, RULES)
    assert result.rule == Rule.CALLING_WINDOW
    assert result.allowed is (opens_at is None)
    assert result.until == opens_at
    if result.until is not None:
        assert result.until.tzinfo is UTC
        assert calling_window(result.until, RULES).allowed
        assert not calling_window(result.until - timedelta(seconds=1), RULES).allowed


@pytest.mark.parametrize(
    ("now", "words"),
    [
        (uk(2026, 12, 25, 10), "bank holiday (Christmas Day)"),
        (uk(2026, 12, 28, 10), "bank holiday (Boxing Day (observed))"),
        (uk(2026, 4, 6, 10), "bank holiday (Easter Monday)"),
        (uk(2026, 6, 14, 10), "no calls on Sundays"),
        (uk(2026, 6, 8, 7, 59), "before opening"),
        (uk(2026, 6, 8, 20), "after closing"),
    ],
)
def test_calling_window_says_why_it_is_closed(now: datetime, words: str) -> None:
    result = calling_window(now, RULES)
    assert words in result.explanation
    assert "calls resume" in result.explanation


def test_scottish_bank_holidays_follow_the_subdivision() -> None:
    second_of_january = uk(2026, 1, 2, 10)  # a bank holiday in Scotland only
    assert calling_window(second_of_january, RULES).allowed
    scotland = calling_window(second_of_january, CallingRules(holiday_subdiv="SCT"))
    assert not scotland.allowed
    assert scotland.until == uk(2026, 1, 3, 9)


def test_no_saturday_hours_means_no_saturday_calls() -> None:
    rules = CallingRules(saturday_hours=None)
    assert calling_window(uk(2026, 6, 12, 20), rules).until == uk(2026, 6, 15, 8)
    assert not calling_window(uk(2026, 6, 13, 12), rules).allowed


def test_custom_hours_are_used() -> None:
    rules = CallingRules(weekday_hours=(time(9, 30), time(21)))
    assert not calling_window(uk(2026, 6, 8, 9, 29), rules).allowed
    assert calling_window(uk(2026, 6, 8, 20, 59), rules).allowed
    assert calling_window(uk(2026, 6, 8, 21), rules).until == uk(2026, 6, 9, 9, 30)


def test_now_in_another_offset_is_the_same_instant() -> None:
    paris = datetime(2026, 6, 8, 8, 59, tzinfo=timezone(timedelta(hours=2)))  # 07:59 London
    assert calling_window(paris, RULES).until == uk(2026, 6, 8, 8)


@pytest.mark.parametrize(
    "gate",
    [
        lambda now: calling_window(now, RULES),
        lambda now: min_gap(now, history(), RULES),
        lambda now: max_attempts_per_day(now, history(), RULES),
        lambda now: max_attempts_per_week(now, history(), RULES),
        lambda now: abandoned_cooloff(now, history(), RULES),
        lambda now: decide(now, history()),
        lambda now: next_allowed_slots(now, RULES, 1),
    ],
)
def test_naive_now_is_refused(gate: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        gate(datetime(2026, 6, 8, 12))


def test_naive_history_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        history(datetime(2026, 6, 8, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        history(abandoned=datetime(2026, 6, 8, 12))


# --- do not call, opt-out --------------------------------------------------------------------------


@pytest.mark.parametrize(("gate", "rule"), [(do_not_call, Rule.DO_NOT_CALL), (opted_out, Rule.OPTED_OUT)])
@pytest.mark.parametrize("flag", [True, False])
def test_permanent_gates(gate: Any, rule: Rule, flag: bool) -> None:
    result = gate(flag)
    assert result.rule == rule
    assert result.allowed is not flag
    assert result.until is None


# --- attempts per day ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "now", "until"),
    [
        ((), uk(2026, 6, 8, 12), None),
        ((uk(2026, 6, 8, 8), uk(2026, 6, 8, 12)), uk(2026, 6, 8, 17), None),
        ((uk(2026, 6, 8, 8), uk(2026, 6, 8, 12), uk(2026, 6, 8, 16)), uk(2026, 6, 8, 17), uk(2026, 6, 9)),
        # yesterday's attempts do not count today
        ((uk(2026, 6, 7, 9), uk(2026, 6, 7, 10), uk(2026, 6, 7, 11)), uk(2026, 6, 8, 8), None),
        # in BST 23:30 UTC is already tomorrow in London: the local day is what counts
        (
            (utc(2026, 6, 10, 23, 30), uk(2026, 6, 11, 9), uk(2026, 6, 11, 10)),
            uk(2026, 6, 11, 17),
            uk(2026, 6, 12),
        ),
        ((utc(2026, 6, 10, 22, 59), uk(2026, 6, 11, 9), uk(2026, 6, 11, 10)), uk(2026, 6, 11, 17), None),
        # in GMT the UTC and local days coincide
        ((utc(2026, 1, 14, 23, 59), uk(2026, 1, 15, 9), uk(2026, 1, 15, 10)), uk(2026, 1, 15, 17), None),
        # the count resets at the next local midnight, on DST change days too
        (
            (uk(2026, 3, 28, 9), uk(2026, 3, 28, 10), uk(2026, 3, 28, 11)),
            uk(2026, 3, 28, 12),
            utc(2026, 3, 29),
        ),
        (
            (uk(2026, 10, 24, 9), uk(2026, 10, 24, 10), uk(2026, 10, 24, 11)),
            uk(2026, 10, 24, 12),
            utc(2026, 10, 24, 23),
        ),
        (
            (uk(2026, 10, 26, 9), uk(2026, 10, 26, 10), uk(2026, 10, 26, 11)),
            uk(2026, 10, 26, 12),
            utc(2026, 10, 27),
        ),
    ],
)
def test_max_attempts_per_day(attempts: tuple[datetime, ...], now: datetime, until: datetime | None) -> None:
    result = max_attempts_per_day(now, history(*attempts), RULES)
    assert result.rule == Rule.MAX_ATTEMPTS_PER_DAY
    assert result.allowed is (until is None)
    assert result.until == until


def test_max_attempts_per_day_uses_the_configured_limit() -> None:
    one = CallingRules(max_attempts_per_day=1)
    now = uk(2026, 6, 8, 12)
    assert not max_attempts_per_day(now, history(uk(2026, 6, 8, 9)), one).allowed
    assert max_attempts_per_day(now, history(uk(2026, 6, 8, 9)), RULES).allowed


# --- attempts per rolling week ---------------------------------------------------------------------

T0 = utc(2026, 6, 1, 9)


def spread(first: datetime, n: int, every: timedelta = timedelta(hours=5)) -> tuple[datetime, ...]:
    return tuple(first + i * every for i in range(n))


@pytest.mark.parametrize(
    ("attempts", "now", "until"),
    [
        (spread(T0, 9), T0 + timedelta(days=3), None),
        (spread(T0, 10), T0 + timedelta(days=3), T0 + timedelta(days=7)),
        # boundary: the oldest attempt stops counting exactly 7 x 24 h after it was made
        (spread(T0, 10), T0 + timedelta(days=7) - timedelta(microseconds=1), T0 + timedelta(days=7)),
        (spread(T0, 10), T0 + timedelta(days=7), None),
        # 12 in the window: three must age out, so it opens when the third oldest does
        (spread(T0, 12), T0 + timedelta(days=3), T0 + timedelta(hours=10) + timedelta(days=7)),
        # attempts older than 7 days are ignored
        (spread(T0 - timedelta(days=8), 5) + spread(T0, 9), T0 + timedelta(days=3), None),
        # unsorted input is fine
        (tuple(reversed(spread(T0, 10))), T0 + timedelta(days=3), T0 + timedelta(days=7)),
        # across the spring DST change the week is 168 real hours: 10:00 GMT -> 11:00 BST
        (spread(uk(2026, 3, 26, 10), 10), uk(2026, 3, 28, 12), uk(2026, 4, 2, 11)),
    ],
)
def test_max_attempts_per_week(attempts: tuple[datetime, ...], now: datetime, until: datetime | None) -> None:
    result = max_attempts_per_week(now, history(*attempts), RULES)
    assert result.rule == Rule.MAX_ATTEMPTS_PER_WEEK
    assert result.allowed is (until is None)
    assert result.until == until
    if until is not None:
        assert max_attempts_per_week(until, history(*attempts), RULES).allowed


@pytest.mark.parametrize(
    ("attempts", "now", "rule", "next_allowed"),
    [
        (spread(uk(2026, 6, 8, 8), 2, timedelta(hours=1)), uk(2026, 6, 8, 13), None, uk(2026, 6, 8, 13)),
        (
            spread(uk(2026, 6, 8, 8), 3, timedelta(hours=1)),
            uk(2026, 6, 8, 12),
            "max_attempts_per_day",
            uk(2026, 6, 9, 8),
        ),
        # the week closed on a Sunday: the week names it, Thursday's opening ends it
        (
            spread(uk(2026, 6, 4, 8), 10, timedelta(hours=8)),
            uk(2026, 6, 7, 12),
            "max_attempts_per_week",
            uk(2026, 6, 11, 8),
        ),
        # both closed: the week (more severe) names it; the day, reopening later, sets the time
        (
            spread(uk(2026, 6, 1, 20), 7, timedelta(hours=8)) + spread(uk(2026, 6, 8, 8), 3, timedelta(hours=1)),
            uk(2026, 6, 8, 12),
            "max_attempts_per_week",
            uk(2026, 6, 9, 8),
        ),
    ],
)
def test_the_attempt_limits_together(
    attempts: tuple[datetime, ...], now: datetime, rule: str | None, next_allowed: datetime
) -> None:
    decision = decide(now, history(*attempts))
    assert (decision.blocking.rule if decision.blocking else None) == rule
    assert decision.allowed is (rule is None)
    assert decision.next_allowed_at == next_allowed


# --- min gap and abandoned cooling-off -------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "now", "until"),
    [
        ((), T0, None),
        ((T0,), T0 + timedelta(hours=4) - timedelta(seconds=1), T0 + timedelta(hours=4)),
        ((T0,), T0 + timedelta(hours=4), None),
        # the latest attempt counts, whatever the input order
        ((T0 + timedelta(hours=3), T0), T0 + timedelta(hours=5), T0 + timedelta(hours=7)),
        # absolute time across the autumn change: 4 real hours
        ((utc(2026, 10, 24, 23, 30),), utc(2026, 10, 25, 1), utc(2026, 10, 25, 3, 30)),
    ],
)
def test_min_gap(attempts: tuple[datetime, ...], now: datetime, until: datetime | None) -> None:
    result = min_gap(now, history(*attempts), RULES)
    assert result.rule == Rule.MIN_GAP
    assert result.allowed is (until is None)
    assert result.until == until


def test_min_gap_uses_the_configured_gap() -> None:
    rules = CallingRules(min_gap=timedelta(minutes=30))
    assert min_gap(T0 + timedelta(minutes=30), history(T0), rules).allowed
    assert min_gap(T0 + timedelta(minutes=29), history(T0), rules).until == T0 + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("abandoned", "now", "until"),
    [
        (None, T0, None),
        (T0, T0 + timedelta(hours=72) - timedelta(seconds=1), T0 + timedelta(hours=72)),
        (T0, T0 + timedelta(hours=72), None),
        (T0, T0 + timedelta(minutes=1), T0 + timedelta(hours=72)),
    ],
)
def test_abandoned_cooloff(abandoned: datetime | None, now: datetime, until: datetime | None) -> None:
    result = abandoned_cooloff(now, history(abandoned=abandoned), RULES)
    assert result.rule == Rule.ABANDONED_COOLOFF
    assert result.allowed is (until is None)
    assert result.until == until


# --- the gate's order, first_blocking, next_allowed_at ----------------------------------------------


def test_the_gate_runs_every_rule_most_severe_first() -> None:
    results = decide(uk(2026, 6, 8, 12), history()).checks
    assert [r.rule for r in results] == [
        "customer_record",
        "do_not_call",
        "opted_out",
        "number_in_call",
        "abandoned_cooloff",
        "max_attempts_per_week",
        "number_max_attempts_per_week",
        "max_attempts_per_day",
        "number_max_attempts_per_day",
        "min_gap",
        "number_min_gap",
        "calling_window",
    ]
    assert all(r.allowed for r in results)
    assert first_blocking(results) is None


@pytest.mark.parametrize(
    ("listed_dnc", "is_opted_out", "now", "hist", "rule"),
    [
        (True, True, uk(2026, 6, 14, 12), history(uk(2026, 6, 14, 11)), "do_not_call"),
        (False, True, uk(2026, 6, 14, 12), history(uk(2026, 6, 14, 11)), "opted_out"),
        (
            False,
            False,
            uk(2026, 6, 14, 12),
            history(uk(2026, 6, 14, 11), abandoned=uk(2026, 6, 14, 11)),
            "abandoned_cooloff",
        ),
        (False, False, uk(2026, 6, 14, 12), history(uk(2026, 6, 14, 11)), "min_gap"),
        (False, False, uk(2026, 6, 14, 12), history(), "calling_window"),
    ],
)
def test_first_blocking_is_the_most_severe(
    listed_dnc: bool, is_opted_out: bool, now: datetime, hist: ContactHistory, rule: str
) -> None:
    results = decide(now, hist, listed_dnc=listed_dnc, opted_out=is_opted_out).checks
    blocking = first_blocking(results)
    assert blocking is not None
    assert blocking.rule == rule


@pytest.mark.parametrize(
    ("now", "hist", "expected"),
    [
        # everything open: now
        (uk(2026, 6, 8, 12), history(), uk(2026, 6, 8, 12)),
        # gap ends at 21:00, after closing: next morning
        (uk(2026, 6, 8, 17, 5), history(uk(2026, 6, 8, 17)), uk(2026, 6, 9, 8)),
        # gap ends at 19:00: that evening
        (uk(2026, 6, 8, 15, 5), history(uk(2026, 6, 8, 15)), uk(2026, 6, 8, 19)),
        # Friday gap ending at closing time: Saturday's later opening
        (uk(2026, 6, 12, 16, 5), history(uk(2026, 6, 12, 16)), uk(2026, 6, 13, 9)),
        # daily limit reached on the Saturday before the spring change: Monday 08:00 BST
        (
            uk(2026, 3, 28, 12),
            history(uk(2026, 3, 28, 9), uk(2026, 3, 28, 10), uk(2026, 3, 28, 11)),
            utc(2026, 3, 30, 7),
        ),
        # abandoned on Christmas Eve: 72 h ends on Sunday 27th, Monday 28th is the substitute day
        (
            uk(2026, 12, 24, 10, 5),
            history(uk(2026, 12, 24, 10), abandoned=uk(2026, 12, 24, 10)),
            uk(2026, 12, 29, 8),
        ),
        # weekly limit reopens on a Sunday: Monday morning
        (
            uk(2026, 6, 11, 12),
            history(*spread(uk(2026, 6, 7, 10), 10, timedelta(hours=6))),
            uk(2026, 6, 15, 8),
        ),
        # weekly limit reopens mid-afternoon on a weekday, after the gap
        (
            uk(2026, 6, 11, 12),
            history(*spread(uk(2026, 6, 4, 14), 10, timedelta(hours=5))),
            uk(2026, 6, 11, 14),
        ),
        # evening cooling-off end lands after closing: next day's opening
        (uk(2026, 6, 8, 21), history(abandoned=uk(2026, 6, 8, 20, 30)), uk(2026, 6, 12, 8)),
    ],
)
def test_next_allowed_at(now: datetime, hist: ContactHistory, expected: datetime) -> None:
    at = decide(now, hist).next_allowed_at
    assert at == expected
    assert decide(at, hist).allowed
    if at > now:
        assert not decide(at - timedelta(seconds=1), hist).allowed


@pytest.mark.parametrize(("listed_dnc", "is_opted_out"), [(True, False), (False, True), (True, True)])
def test_next_allowed_at_is_never_for_permanent_blocks(listed_dnc: bool, is_opted_out: bool) -> None:
    decision = decide(uk(2026, 6, 8, 12), history(), listed_dnc=listed_dnc, opted_out=is_opted_out)
    assert not decision.allowed and decision.permanent and decision.next_allowed_at is None


# --- callback slots --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "count", "step", "expected"),
    [
        (
            uk(2026, 6, 8, 14, 7),
            3,
            15,
            [uk(2026, 6, 8, 14, 15), uk(2026, 6, 8, 14, 30), uk(2026, 6, 8, 14, 45)],
        ),
        (uk(2026, 6, 8, 14, 15), 1, 15, [uk(2026, 6, 8, 14, 15)]),  # an aligned start is itself a slot
        (uk(2026, 6, 8, 19, 40), 3, 15, [uk(2026, 6, 8, 19, 45), uk(2026, 6, 9, 8), uk(2026, 6, 9, 8, 15)]),
        (
            uk(2026, 6, 13, 16, 50),
            2,
            15,
            [uk(2026, 6, 15, 8), uk(2026, 6, 15, 8, 15)],
        ),  # Saturday closes at 17
        (uk(2026, 12, 24, 19, 50), 2, 15, [uk(2026, 12, 29, 8), uk(2026, 12, 29, 8, 15)]),  # Christmas
        (uk(2026, 4, 2, 19, 50), 1, 15, [uk(2026, 4, 4, 9)]),  # Good Friday
        (utc(2026, 3, 28, 16, 50), 1, 15, [utc(2026, 3, 30, 7)]),  # spring DST: 08:00 BST
        (utc(2026, 10, 24, 15, 50), 2, 15, [utc(2026, 10, 26, 8), utc(2026, 10, 26, 8, 15)]),  # autumn DST
        (uk(2026, 6, 8, 8, 1), 2, 60, [uk(2026, 6, 8, 9), uk(2026, 6, 8, 10)]),
        (
            uk(2026, 6, 8, 7, 0),
            1,
            7,
            [uk(2026, 6, 8, 8, 3)],
        ),  # grid from midnight: 480 min is not a multiple of 7
        (uk(2026, 6, 8, 14, 7), 0, 15, []),
    ],
)
def test_next_allowed_slots(start: datetime, count: int, step: int, expected: list[datetime]) -> None:
    slots = next_allowed_slots(start, RULES, count, step)
    assert slots == expected
    assert all(s.tzinfo is UTC and calling_window(s, RULES).allowed for s in slots)


def test_next_allowed_slots_many_are_increasing_and_open() -> None:
    slots = next_allowed_slots(uk(2026, 12, 20, 12), RULES, 500)
    assert len(slots) == 500
    assert all(a < b for a, b in zip(slots, slots[1:], strict=False))
    assert all(calling_window(s, RULES).allowed for s in slots)
    assert not any(s.astimezone(LONDON).date().isoformat() in {"2026-12-25", "2026-12-28"} for s in slots)


@pytest.mark.parametrize(("count", "step"), [(-1, 15), (2001, 15), (1, 0), (1, 241)])
def test_next_allowed_slots_rejects_bad_arguments(count: int, step: int) -> None:
    with pytest.raises(ValueError):
        next_allowed_slots(uk(2026, 6, 8, 12), RULES, count, step)
