"""The gate's decision on its own: nations' bank holidays from the postcode, per-number limits, every
rule checked and reported, and the next allowed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dialler.compliance.gate import Channel, ContactFacts, check, shared_hours
from dialler.compliance.gates import CallingRules, nation_of

RULES = CallingRules()
LONDON = ZoneInfo("Europe/London")


def uk(year: int, month: int, day: int, hour: int) -> datetime:
    return datetime(year, month, day, hour, tzinfo=LONDON).astimezone(UTC)


def customer(postcode: str | None, **overrides: object) -> ContactFacts:
    base: dict[str, object] = {"user_id": 7, "phone_e164": "+447700900123", "postcode": postcode}
    return ContactFacts(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("postcode", "nation"),
    [
        ("EH1 1YZ", "SCT"),
        ("g2 1dy", "SCT"),  # Glasgow is the single-letter area G...
        ("GL1 2AB", "ENG"),  # ...which Gloucester (GL) is not
        ("ZE1 0AA", "SCT"),
        ("BT1 5GS", "NIR"),
        ("CF10 1AA", "ENG"),  # Wales keeps England's bank holidays
        ("SW1A 1AA", "ENG"),
        (None, "ANY"),
        ("", "ANY"),
        ("unknown", "ANY"),
    ],
)
def test_the_nation_comes_from_the_postcode_area(postcode: str | None, nation: str) -> None:
    assert nation_of(postcode) == nation


@pytest.mark.parametrize(
    ("at", "closed"),
    [
        (uk(2026, 1, 2, 11), {"EH1 1YZ", None}),  # 2 January: Scotland only
        (uk(2026, 11, 30, 11), {"EH1 1YZ", None}),  # St Andrew's Day
        (uk(2025, 12, 1, 11), {"EH1 1YZ", None}),  # its substitute: 30 Nov 2025 was a Sunday
        (uk(2027, 7, 12, 11), {"BT1 5GS", None}),  # the Twelfth: Northern Ireland only
        (uk(2026, 8, 3, 11), {"EH1 1YZ", None}),  # Scotland's summer bank holiday
        (uk(2026, 8, 31, 11), {"SW1A 1AA", "BT1 5GS", None}),  # England's (and NI's) late summer one
        (uk(2026, 6, 10, 11), set()),  # an ordinary Wednesday
    ],
)
def test_bank_holidays_by_nation(at: datetime, closed: set[str | None]) -> None:
    """A Scottish customer is not called on 2 January or St Andrew's Day, an English one is; a
    Northern Irish one not on 12 July; a customer whose nation we cannot tell, on none of them."""
    for postcode in ("SW1A 1AA", "EH1 1YZ", "BT1 5GS", None):
        decision = check(customer(postcode), channel=Channel.VOICE, at=at, rules=RULES)
        assert decision.allowed is (postcode not in closed), postcode
        if postcode in closed:
            assert decision.blocking is not None and decision.blocking.rule == "calling_window"
            assert "bank holiday" in decision.blocking.explanation
            assert decision.next_allowed_at is not None and decision.next_allowed_at > at
    # The shared pre-check before an agent is offered anyone is open when any nation is.
    assert shared_hours(at, RULES).allowed


def test_a_scot_on_2_january_is_next_allowed_on_the_next_scottish_working_morning() -> None:
    decision = check(customer("EH1 1YZ"), channel=Channel.VOICE, at=uk(2026, 1, 2, 11), rules=RULES)
    assert decision.next_allowed_at == uk(2026, 1, 3, 9)  # Saturday hours


def test_attempts_count_per_number_whoever_was_called() -> None:
    at = uk(2026, 6, 10, 15)
    calls_to_the_number = tuple(at - timedelta(hours=h) for h in (7, 6, 5))  # to another customer
    decision = check(
        customer("SW1A 1AA", number_attempts=calls_to_the_number), channel=Channel.VOICE, at=at, rules=RULES
    )
    assert not decision.allowed
    assert decision.blocking is not None and decision.blocking.rule == "number_max_attempts_per_day"
    assert decision.next_allowed_at == uk(2026, 6, 11, 8)  # the count resets at midnight, hours open at 8


def test_a_decision_names_every_rule_checked_and_every_reason() -> None:
    at = uk(2026, 6, 10, 11)
    facts = customer(
        "SW1A 1AA",
        status="vulnerable",
        last_abandoned_at=at - timedelta(hours=1),
        attempts=(at - timedelta(minutes=20),),
        number_attempts=(at - timedelta(minutes=20),),
    )
    decision = check(facts, channel=Channel.VOICE, at=at, rules=RULES, agent_trained_vulnerable=False)
    assert decision.rules_checked == (
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
        "vulnerable_needs_trained_agent",
    )
    assert [r.split(":")[0] for r in decision.reasons] == [
        "abandoned_cooloff",
        "min_gap",
        "number_min_gap",
        "vulnerable_needs_trained_agent",
    ]
    assert decision.next_allowed_at == at + timedelta(hours=71)  # the 72 h outlasts the gap
    record = decision.as_record()
    assert "+44" not in str(record)  # no personal data in what is kept


def test_the_stop_confirmation_is_the_one_text_an_opted_out_number_gets() -> None:
    at = uk(2026, 6, 10, 11)
    opted = customer(None, opted_out=True)
    assert not check(opted, channel=Channel.SMS, at=at, rules=RULES).allowed
    assert check(opted, channel=Channel.SMS, at=at, rules=RULES, stop_confirmation=True).allowed


def test_a_number_with_a_call_under_way_is_not_rung_again_even_for_a_booked_callback() -> None:
    """Never two live calls to one number (a household's shared phone): the second customer waits
    until the number is asked about again, and a booked callback does too."""
    at = uk(2026, 6, 10, 11)
    busy_until = at + timedelta(minutes=5)
    for booked in (False, True):
        decision = check(
            customer("SW1A 1AA", number_busy_until=busy_until, booked_callback=booked),
            channel=Channel.VOICE,
            at=at,
            rules=RULES,
        )
        assert not decision.allowed and decision.blocking is not None
        assert decision.blocking.rule == "number_in_call" and "under way" in decision.blocking.explanation
        assert decision.next_allowed_at == busy_until  # asked again, not dropped from the queues
    later = customer("SW1A 1AA", number_busy_until=busy_until)
    assert check(later, channel=Channel.VOICE, at=busy_until, rules=RULES).allowed


def test_a_booked_callback_lifts_the_limits_not_the_cool_off() -> None:
    at = uk(2026, 6, 10, 11)
    limited = tuple(at - timedelta(minutes=m) for m in (90, 60, 30))
    booked = customer("SW1A 1AA", attempts=limited, number_attempts=limited, booked_callback=True)
    assert check(booked, channel=Channel.VOICE, at=at, rules=RULES).allowed
    cooling = customer("SW1A 1AA", last_abandoned_at=at - timedelta(hours=1), booked_callback=True)
    assert check(cooling, channel=Channel.VOICE, at=at, rules=RULES).blocking.rule == "abandoned_cooloff"  # type: ignore[union-attr]
