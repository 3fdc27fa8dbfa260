"""The pacer's pure functions: how many calls each mode places, and how the governor steers it."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from dialler.pacing.hour_of_day import HOUR_OF_DAY_MIN_CALLS, enough_for_hour_of_day, same_hour_windows
from dialler.pacing.predictive import (
    LOOSEN_UNDER_BEFORE_PATCH,
    MARGIN_MAX,
    MARGIN_MIN,
    PRIOR_CALLS,
    DecayedMean,
    Estimates,
    Estimator,
    Floor,
    PacingMode,
    adapt_margin,
    expected_free,
    govern,
    most_new_calls,
    needs_agent,
    plan_calls,
    still_answers,
)

EST = Estimates(answer_probability=0.3, ring_s=10.0, talk_s=240.0, wrap_s=25.0)


def test_preview_places_nothing() -> None:
    assert (
        plan_calls(
            mode=PacingMode.PREVIEW, floor=Floor(ready=5, in_flight=0), estimates=EST, margin=2, max_ratio=3
        ).calls
        == 0
    )


@pytest.mark.parametrize(("ready", "in_flight", "calls"), [(5, 0, 5), (5, 2, 3), (2, 4, 0), (0, 0, 0)])
def test_progressive_places_one_call_per_ready_agent_not_already_covered(
    ready: int, in_flight: int, calls: int
) -> None:
    plan = plan_calls(
        mode=PacingMode.PROGRESSIVE, floor=Floor(ready=ready, in_flight=in_flight), estimates=EST, margin=2, max_ratio=3
    )
    assert plan.calls == calls


def test_predictive_places_more_calls_than_ready_agents_within_its_margin() -> None:
    floor = Floor(ready=10, in_flight=0)
    plan = plan_calls(mode=PacingMode.PREDICTIVE, floor=floor, estimates=EST, margin=2, max_ratio=3)
    assert plan.calls > 10
    p = EST.answer_probability
    # The answers it risks: mean + 2 sd stays within the free agents, one more call would not.
    assert plan.calls * p + 2 * math.sqrt(plan.calls * p * (1 - p)) <= 10
    more = plan.calls + 1
    assert more * p + 2 * math.sqrt(more * p * (1 - p)) > 10


def test_a_wider_margin_never_places_more_calls() -> None:
    floor = Floor(ready=20, in_flight=5, wrapping_for_s=(20.0, 24.0))
    counts = [
        plan_calls(mode=PacingMode.PREDICTIVE, floor=floor, estimates=EST, margin=m, max_ratio=3).calls
        for m in (0.5, 1.0, 2.0, 3.0, 4.0)
    ]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[-1]


def test_predictive_never_places_fewer_than_progressive_nor_exceeds_its_ratio() -> None:
    rng = random.Random(7)
    for _ in range(500):
        floor = Floor(ready=rng.randint(0, 30), in_flight=rng.randint(0, 40))
        margin, ratio = rng.uniform(MARGIN_MIN, MARGIN_MAX), rng.uniform(1.0, 3.0)
        plan = plan_calls(mode=PacingMode.PREDICTIVE, floor=floor, estimates=EST, margin=margin, max_ratio=ratio)
        progressive = max(0, floor.ready - floor.in_flight)
        assert plan.calls >= progressive
        if plan.calls > progressive:
            assert floor.in_flight + plan.calls <= ratio * plan.expected_free + 1e-9


def test_a_call_ringing_long_past_the_usual_answer_is_unlikely_to_be_answered() -> None:
    chances = [still_answers(0.3, 10.0, t) for t in (0.0, 5.0, 10.0, 20.0, 30.0)]
    assert chances[0] == pytest.approx(0.3)
    assert chances == sorted(chances, reverse=True)
    assert chances[-1] < 0.01
    # Calls that have rung a while leave room for new ones.
    fresh = most_new_calls(free=5, p=0.3, margin=2, ringing=(0.3,) * 6, limit=100)
    aged = most_new_calls(
        free=5, p=0.3, margin=2, ringing=tuple(still_answers(0.3, 10.0, 22.0) for _ in range(6)), limit=100
    )
    assert aged > fresh


def test_agents_about_to_finish_wrap_up_count_as_free_and_talkers_do_not() -> None:
    assert expected_free(Floor(ready=3, in_flight=0), EST) == 3
    just_started = expected_free(Floor(ready=0, in_flight=0, wrapping_for_s=(1.0,)), EST)
    nearly_done = expected_free(Floor(ready=0, in_flight=0, wrapping_for_s=(30.0,)), EST)
    assert just_started < 0.2 < 0.6 < nearly_done <= 1
    # A ring (10 s) is shorter than the wrap-up still to come after a conversation.
    assert expected_free(Floor(ready=0, in_flight=0, talking_for_s=(600.0,) * 10), EST) == 0


def test_the_margin_tightens_at_once_on_an_overshoot_and_loosens_slowly() -> None:
    assert adapt_margin(2.0, recent_rate=0.02, target_rate=0.005, answered=200) == pytest.approx(3.0)
    assert adapt_margin(2.0, recent_rate=0.001, target_rate=0.005, answered=200) == pytest.approx(1.9)
    # Under the target it loosens; at it, it holds. (PacingWorkflow's histories from before the change
    # held until half the target.)
    assert adapt_margin(2.0, recent_rate=0.004, target_rate=0.005, answered=200) == pytest.approx(1.9)
    assert adapt_margin(2.0, recent_rate=0.005, target_rate=0.005, answered=200) == 2.0
    assert (
        adapt_margin(2.0, recent_rate=0.004, target_rate=0.005, answered=200, loosen_under=LOOSEN_UNDER_BEFORE_PATCH)
        == 2.0
    )
    assert adapt_margin(2.0, recent_rate=0.5, target_rate=0.005, answered=10) == 2.0  # too few answers
    assert adapt_margin(MARGIN_MAX, recent_rate=0.5, target_rate=0.005, answered=200) == MARGIN_MAX
    assert adapt_margin(MARGIN_MIN, recent_rate=0.0, target_rate=0.005, answered=200) == MARGIN_MIN


def test_the_governor_tapers_predictive_then_pauses_at_the_ceiling() -> None:
    open_ = govern(PacingMode.PREDICTIVE, rate=0.002, ceiling=0.01)
    assert (open_.mode, open_.paused) == (PacingMode.PREDICTIVE, False)
    tapered = govern(PacingMode.PREDICTIVE, rate=0.008, ceiling=0.01)
    assert (tapered.mode, tapered.paused) == (PacingMode.PROGRESSIVE, False)
    assert "tapered" in tapered.reason
    paused = govern(PacingMode.PREDICTIVE, rate=0.01, ceiling=0.01)
    assert paused.paused and "0.80%" not in paused.reason and "1.00%" in paused.reason
    assert govern(PacingMode.PROGRESSIVE, rate=0.03, ceiling=0.03).paused
    assert not govern(PacingMode.PREVIEW, rate=0.5, ceiling=0.01).paused  # agents dial themselves


def test_the_estimator_follows_what_calls_do() -> None:
    estimator = Estimator.starting(Estimates(answer_probability=0.5, ring_s=20.0, talk_s=240.0, wrap_s=25.0))
    rng = random.Random(3)
    for _ in range(5000):
        answered = rng.random() < 0.2
        estimator.dialled(person=answered, machine=False, ring_s=8.0 if answered else None)
    estimates = estimator.estimates()
    assert estimates.answer_probability == pytest.approx(0.2, abs=0.04)
    assert estimates.ring_s == pytest.approx(8.0, abs=0.5)


@pytest.mark.parametrize(("calls", "rate"), [(200, 0.05), (500, 0.4), (5000, 0.12)])
def test_measured_calls_outweigh_the_configured_starting_value(calls: int, rate: float) -> None:
    """The live loader rebuilds the estimator from at most 500 calls each tick: the starting value must
    fade from the estimate within them, not keep a third of it."""
    estimator = Estimator.starting(Estimates(answer_probability=0.25, ring_s=10.0, talk_s=240.0, wrap_s=25.0))
    answered = round(calls * rate)
    for i in range(calls):  # spread evenly, so the decay's recency weighting sees the same rate throughout
        estimator.dialled(person=i * answered // calls != (i + 1) * answered // calls, machine=False, ring_s=8.0)
    assert estimator.estimates().answer_probability == pytest.approx(rate, abs=0.01)


def test_the_first_calls_move_the_estimate_without_swinging_it_to_0_or_1() -> None:
    mean = DecayedMean(0.25, 0.002)
    mean.observe(0.0)
    assert mean.value == pytest.approx(0.25 * PRIOR_CALLS / (PRIOR_CALLS + 1))


@pytest.mark.parametrize(
    ("answered", "machine", "amd_on", "takes_agent"),
    [
        (True, False, False, True),
        (True, False, True, True),
        (True, True, False, True),  # no detection: the machine is put through and holds an agent
        (True, True, True, False),  # detection hangs up on it before the bridge
        (False, False, False, False),
    ],
)
def test_a_machine_is_an_answer_for_pacing_unless_detection_hangs_up_on_it(
    answered: bool, machine: bool, amd_on: bool, takes_agent: bool
) -> None:
    assert needs_agent(answered=answered, machine=machine, amd_on=amd_on) is takes_agent


def test_an_hour_with_too_few_calls_falls_back_to_the_last_24_hours() -> None:
    assert not enough_for_hour_of_day(HOUR_OF_DAY_MIN_CALLS - 1)
    assert enough_for_hour_of_day(HOUR_OF_DAY_MIN_CALLS)


def test_the_same_local_hour_over_the_last_days_follows_the_clock_change() -> None:
    # Tuesday 31 March 2026, 10:20 BST; the clocks went forward on Sunday 29 March.
    now = datetime(2026, 3, 31, 9, 20, tzinfo=UTC)
    windows = same_hour_windows(now, "Europe/London", days=4)
    assert windows == [
        (datetime(2026, 3, 31, 9, tzinfo=UTC), now),  # this hour so far
        (datetime(2026, 3, 30, 9, tzinfo=UTC), datetime(2026, 3, 30, 10, tzinfo=UTC)),
        (datetime(2026, 3, 29, 9, tzinfo=UTC), datetime(2026, 3, 29, 10, tzinfo=UTC)),
        (datetime(2026, 3, 28, 10, tzinfo=UTC), datetime(2026, 3, 28, 11, tzinfo=UTC)),  # 10:00 GMT
    ]
