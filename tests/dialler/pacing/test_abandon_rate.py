"""Ofcom's abandoned-call rate, its answering-machine adjustment, and the ceiling that pauses
progressive dialling: the pure rules, on the numbers a regulator would check by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dialler.errors import Invalid
from dialler.pacing.abandon_rate import (
    DEFAULT_CEILING,
    OFCOM_LIMIT,
    PacingState,
    RateInputs,
    abandon_rate,
    progressive_paused,
    validate_ceiling,
    verdict,
)
from dialler.pacing.errors import CeilingAboveOfcomLimit, ProgressivePaused


def test_without_amd_the_rate_is_drops_over_live_calls_drops_included() -> None:
    rate = abandon_rate(RateInputs(abandoned=3, live_answered=97))
    assert rate.rate == pytest.approx(0.03)
    assert rate.machine_adjustment == 0
    assert rate.adjusted_abandoned == 3


def test_the_worked_example_of_the_ofcom_adjustment() -> None:
    """UK-RULES.md: 29 drops, 9 people, 7 machines, AMD on → 64.44 %."""
    rate = abandon_rate(RateInputs(abandoned=29, live_answered=9, machine=7, amd_on=True))
    assert rate.machine_adjustment == pytest.approx(29 * 7 / 16)
    assert rate.adjusted_abandoned == pytest.approx(16.3125)
    assert round(rate.rate or 0, 4) == 0.6444


def test_machines_do_not_lower_the_rate_when_amd_is_off() -> None:
    """Without AMD nothing says any drop was a machine: the drops all count."""
    off = abandon_rate(RateInputs(abandoned=29, live_answered=9, machine=7, amd_on=False))
    assert off.rate == pytest.approx(29 / 38)
    assert off.machine_adjustment == 0


def test_no_answered_call_at_all_is_no_rate_not_zero() -> None:
    rate = abandon_rate(RateInputs(abandoned=0, live_answered=0, machine=0, amd_on=True))
    assert rate.rate is None
    assert verdict("unsigned", rate, DEFAULT_CEILING).state is PacingState.OPEN


def test_drops_with_no_person_reached_count_in_full_even_with_amd() -> None:
    """The estimate would call every drop a machine (0/0); a sample with no person cannot say so."""
    rate = abandon_rate(RateInputs(abandoned=2, live_answered=0, machine=5, amd_on=True))
    assert rate.machine_adjustment == 0
    assert rate.rate == 1.0
    assert verdict("unsigned", rate, OFCOM_LIMIT).paused


def test_one_drop_and_nobody_else_is_a_100_percent_rate() -> None:
    assert abandon_rate(RateInputs(abandoned=1, live_answered=0)).rate == 1.0


def test_counts_cannot_be_negative() -> None:
    with pytest.raises(ValueError):
        RateInputs(abandoned=-1, live_answered=3)


@pytest.mark.parametrize(
    ("abandoned", "live", "ceiling", "state"),
    [
        (0, 500, Decimal("0"), PacingState.OPEN),  # a zero ceiling pauses on the first drop, not before
        (1, 500, Decimal("0"), PacingState.PAUSED),
        (1, 99, Decimal("0.01"), PacingState.PAUSED),  # exactly at the ceiling: the next drop would breach it
        (1, 100, Decimal("0.01"), PacingState.OPEN),  # 0.990 %
        (3, 97, Decimal("0.03"), PacingState.PAUSED),
        (2, 97, Decimal("0.03"), PacingState.OPEN),
    ],
)
def test_progressive_pauses_once_the_rate_reaches_the_ceiling(
    abandoned: int, live: int, ceiling: Decimal, state: PacingState
) -> None:
    found = verdict("unsigned", abandon_rate(RateInputs(abandoned=abandoned, live_answered=live)), ceiling)
    assert found.state is state
    assert (found.reason is not None) is (state is PacingState.PAUSED)


def test_the_reason_names_the_rate_and_the_ceiling() -> None:
    found = verdict("unsigned", abandon_rate(RateInputs(abandoned=1, live_answered=49)), DEFAULT_CEILING)
    assert found.reason == "Progressive paused: abandoned rate 2 % ≥ ceiling 1 % (last 24 h)"


def test_the_default_ceiling_is_1_percent_and_the_law_3() -> None:
    assert Decimal("0.01") == DEFAULT_CEILING
    assert Decimal("0.03") == OFCOM_LIMIT


@pytest.mark.parametrize("asked", ["0", "0.005", "0.01", "0.03", 0.03])
def test_a_ceiling_up_to_3_percent_is_accepted(asked: str | float) -> None:
    assert validate_ceiling(asked) == Decimal(str(asked)).quantize(Decimal("0.0001"))


@pytest.mark.parametrize("asked", ["0.0301", "0.04", "1", 3])
def test_a_ceiling_above_3_percent_is_refused_not_capped(asked: str | int) -> None:
    with pytest.raises(CeilingAboveOfcomLimit) as refused:
        validate_ceiling(asked)
    assert "cannot be above 3 %" in refused.value.message
    assert isinstance(refused.value, Invalid)  # a 422


@pytest.mark.parametrize("asked", ["-0.01", "NaN", "Infinity", "one percent"])
def test_a_ceiling_that_is_no_fraction_is_refused(asked: str) -> None:
    with pytest.raises(Invalid):
        validate_ceiling(asked)


def test_the_refusal_of_a_progressive_call_says_why_for_every_paused_queue() -> None:
    one = verdict("unsigned", abandon_rate(RateInputs(abandoned=1, live_answered=9)), DEFAULT_CEILING)
    two = verdict("callbacks", abandon_rate(RateInputs(abandoned=1, live_answered=19)), Decimal("0.03"))
    single = progressive_paused([one])
    assert isinstance(single, ProgressivePaused)
    assert single.message == "Progressive paused: abandoned rate 10 % ≥ ceiling 1 % (last 24 h)"
    both = progressive_paused([one, two])
    assert "unsigned abandoned rate 10 % ≥ ceiling 1 %" in both.message
    assert "callbacks abandoned rate 5 % ≥ ceiling 3 %" in both.message
    assert [q["queue"] for q in both.details["queues"]] == ["unsigned", "callbacks"]
