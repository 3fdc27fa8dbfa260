from datetime import UTC, datetime, timedelta

from dialler.callbacks.rules import prepare_at, spread_fraction

DUE = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


def test_prepared_in_the_first_half_of_the_window() -> None:
    for user_id in range(1, 2000):
        at = prepare_at(DUE, user_id, 300)
        assert DUE - timedelta(seconds=300) <= at < DUE - timedelta(seconds=150)


def test_a_crowded_minute_is_spread_evenly_over_half_the_window() -> None:
    fractions = [spread_fraction(u) for u in range(1, 10_001)]
    per_tenth = [sum(1 for f in fractions if i / 10 <= f < (i + 1) / 10) for i in range(10)]
    assert all(900 <= n <= 1100 for n in per_tenth), per_tenth
    assert spread_fraction(42) == spread_fraction(42)  # fixed per customer: replays and reschedules agree


def test_no_window_prepares_at_the_due_time() -> None:
    assert prepare_at(DUE, 7, 0) == DUE
