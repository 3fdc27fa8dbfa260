from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dialler.queues.eligibility import QueueName
from dialler.queues.scoring import MAX_SCORE, explain_score, queue_score

CLAIM = datetime(2025, 3, 1, 12, tzinfo=UTC)
DUE = datetime(2026, 6, 8, 14, 30, tzinfo=UTC)


def score(queue: QueueName = QueueName.UNSIGNED, **overrides: Any) -> float:
    kwargs: dict[str, Any] = {
        "attempts_total": 2,
        "oldest_active_claim_at": CLAIM,
        "pending_requirements": 3,
        "user_id": 1000,
        "due_at": DUE if queue is QueueName.CALLBACKS else None,
    }
    return queue_score(queue, **{**kwargs, **overrides})


# Each row: two inputs that differ in one criterion; the first must be called sooner (lower score).
@pytest.mark.parametrize(
    ("queue", "sooner", "later"),
    [
        # callbacks: more late (earlier due) first, whatever the other criteria say
        (QueueName.CALLBACKS, {"due_at": DUE - timedelta(minutes=1)}, {"due_at": DUE}),
        # to the second: one due now comes before one queued ahead of its time in the same minute
        (QueueName.CALLBACKS, {"due_at": DUE, "user_id": 9}, {"due_at": DUE + timedelta(seconds=1), "user_id": 1}),
        (QueueName.CALLBACKS, {"due_at": DUE - timedelta(days=30)}, {"due_at": DUE}),
        (QueueName.CALLBACKS, {"due_at": DUE, "attempts_total": 50}, {"due_at": DUE + timedelta(minutes=1)}),
        (QueueName.CALLBACKS, {"user_id": 1}, {"user_id": 2}),
        # never contacted, then fewer attempts
        (QueueName.UNSIGNED, {"attempts_total": 0}, {"attempts_total": 1}),
        (QueueName.UNSIGNED, {"attempts_total": 1}, {"attempts_total": 2}),
        (QueueName.UNSIGNED, {"attempts_total": 62}, {"attempts_total": 63}),
        (
            QueueName.OUTSTANDING,
            {"attempts_total": 0, "oldest_active_claim_at": CLAIM},
            {"attempts_total": 1, "oldest_active_claim_at": CLAIM - timedelta(days=3000)},
        ),
        # older claims first (day resolution), beating pending requirements
        (QueueName.UNSIGNED, {"oldest_active_claim_at": CLAIM - timedelta(days=1)}, {}),
        (
            QueueName.UNSIGNED,
            {"oldest_active_claim_at": CLAIM - timedelta(days=1), "pending_requirements": 0},
            {"pending_requirements": 63},
        ),
        (
            QueueName.UNSIGNED,
            {"oldest_active_claim_at": datetime(2000, 1, 1, tzinfo=UTC)},
            {"oldest_active_claim_at": datetime(2000, 1, 2, tzinfo=UTC)},
        ),
        (
            QueueName.UNSIGNED,
            {"oldest_active_claim_at": datetime(2089, 9, 1, tzinfo=UTC)},
            {"oldest_active_claim_at": None},
        ),
        (QueueName.UNSIGNED, {}, {"oldest_active_claim_at": None}),  # no claim date sorts last
        # more pending requirements first, beating user id
        (QueueName.OUTSTANDING, {"pending_requirements": 4}, {"pending_requirements": 3}),
        (
            QueueName.OUTSTANDING,
            {"pending_requirements": 1, "user_id": 99_999},
            {"pending_requirements": 0, "user_id": 1},
        ),
        (QueueName.OUTSTANDING, {"pending_requirements": 63}, {"pending_requirements": 62}),
        # deterministic tie-break by user id
        (QueueName.UNSIGNED, {"user_id": 0}, {"user_id": 1}),
        (QueueName.UNSIGNED, {"user_id": 16_777_214}, {"user_id": 16_777_215}),
    ],
)
def test_each_criterion_orders_strictly(queue: QueueName, sooner: dict[str, Any], later: dict[str, Any]) -> None:
    assert score(queue, **sooner) < score(queue, **later)


def test_queues_compare_in_priority_order() -> None:
    worst_callback = score(QueueName.CALLBACKS, due_at=datetime(2200, 1, 1, tzinfo=UTC), user_id=2**30)
    best_unsigned = score(
        QueueName.UNSIGNED,
        attempts_total=0,
        oldest_active_claim_at=datetime(1990, 1, 1, tzinfo=UTC),
        pending_requirements=99,
        user_id=0,
    )
    worst_unsigned = score(
        QueueName.UNSIGNED,
        attempts_total=999,
        oldest_active_claim_at=None,
        pending_requirements=0,
        user_id=2**30,
    )
    best_outstanding = score(
        QueueName.OUTSTANDING,
        attempts_total=0,
        oldest_active_claim_at=datetime(1990, 1, 1, tzinfo=UTC),
        pending_requirements=99,
        user_id=0,
    )
    assert worst_callback < best_unsigned <= worst_unsigned < best_outstanding


@pytest.mark.parametrize(
    ("queue", "overrides", "equal_to"),
    [
        # beyond the field widths values are capped, so the order is non-strict but never inverted
        (QueueName.UNSIGNED, {"attempts_total": 63}, {"attempts_total": 500}),
        (QueueName.OUTSTANDING, {"pending_requirements": 63}, {"pending_requirements": 1000}),
        (QueueName.UNSIGNED, {"user_id": 16_777_215}, {"user_id": 10**12}),
        (
            QueueName.UNSIGNED,
            {"oldest_active_claim_at": datetime(1999, 1, 1, tzinfo=UTC)},
            {"oldest_active_claim_at": datetime(2000, 1, 1, tzinfo=UTC)},
        ),
        (
            QueueName.CALLBACKS,
            {"due_at": datetime(2019, 1, 1, tzinfo=UTC)},
            {"due_at": datetime(2020, 1, 1, tzinfo=UTC)},
        ),
        # resolution: the same claim day and the same due second are ties
        (
            QueueName.UNSIGNED,
            {"oldest_active_claim_at": CLAIM.replace(hour=0)},
            {"oldest_active_claim_at": CLAIM.replace(hour=23)},
        ),
        (QueueName.CALLBACKS, {"due_at": DUE}, {"due_at": DUE + timedelta(microseconds=999_999)}),
        # callbacks ignore the unsigned/outstanding criteria; the others ignore due_at
        (
            QueueName.CALLBACKS,
            {"attempts_total": 0, "pending_requirements": 9},
            {"attempts_total": 9, "pending_requirements": 0},
        ),
        (QueueName.UNSIGNED, {"due_at": DUE}, {"due_at": None}),
        # the same instant in another offset is the same score
        (QueueName.CALLBACKS, {"due_at": DUE}, {"due_at": DUE.astimezone(timezone(timedelta(hours=1)))}),
    ],
)
def test_ties_and_caps(queue: QueueName, overrides: dict[str, Any], equal_to: dict[str, Any]) -> None:
    assert score(queue, **overrides) == score(queue, **equal_to)


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "attempts_total": 10**9,
            "oldest_active_claim_at": None,
            "pending_requirements": 0,
            "user_id": 2**60,
        },
        {
            "attempts_total": 0,
            "oldest_active_claim_at": datetime(1900, 1, 1, tzinfo=UTC),
            "pending_requirements": 10**9,
            "user_id": 0,
        },
        {
            "attempts_total": 63,
            "oldest_active_claim_at": datetime(2099, 1, 1, tzinfo=UTC),
            "pending_requirements": 0,
            "user_id": 16_777_215,
        },
    ],
)
@pytest.mark.parametrize("queue", list(QueueName))
def test_scores_are_exact_integers_below_2_pow_53(queue: QueueName, kwargs: dict[str, Any]) -> None:
    value = queue_score(queue, **kwargs, due_at=datetime(2400, 1, 1, tzinfo=UTC))
    assert isinstance(value, float)
    assert value.is_integer()
    assert 0 <= value <= MAX_SCORE < 2**53
    assert float(int(value)) == value
    assert float(int(value) + 1) - value == 1.0  # still in the range where a double counts in ones


def test_neighbouring_user_ids_stay_distinct_at_the_top_of_the_range() -> None:
    # The largest scores are where float rounding would bite first if the layout overflowed.
    top = {"attempts_total": 63, "oldest_active_claim_at": None, "pending_requirements": 0}
    a = queue_score(QueueName.OUTSTANDING, **top, user_id=16_777_214)
    b = queue_score(QueueName.OUTSTANDING, **top, user_id=16_777_215)
    assert b - a == 1.0
    assert b == MAX_SCORE - 2**51  # outstanding is tier 2 of 0..2, its body is all ones


def test_score_layout_is_stable() -> None:
    # A changed layout silently reorders every live queue until the next rebuild: make it loud.
    assert score(QueueName.UNSIGNED) == 2**51 + (2 << 45) + (9191 << 30) + (60 << 24) + 1000
    second = int((DUE - datetime(2020, 1, 1, tzinfo=UTC)).total_seconds())
    assert score(QueueName.CALLBACKS) == (second << 20) + 1000


@pytest.mark.parametrize(
    ("queue", "overrides", "message"),
    [
        (QueueName.CALLBACKS, {"due_at": None}, "due_at"),
        (QueueName.CALLBACKS, {"due_at": datetime(2026, 6, 8, 14)}, "timezone-aware"),
        (QueueName.UNSIGNED, {"oldest_active_claim_at": datetime(2025, 1, 1)}, "timezone-aware"),
        (QueueName.UNSIGNED, {"attempts_total": -1}, ">= 0"),
        (QueueName.UNSIGNED, {"pending_requirements": -1}, ">= 0"),
        (QueueName.UNSIGNED, {"user_id": -5}, ">= 0"),
        ("no_such_queue", {}, "no_such_queue"),
    ],
)
def test_bad_inputs_are_refused(queue: Any, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(queue, **overrides)


def test_queue_may_be_given_by_name() -> None:
    assert score("outstanding_requests") == score(QueueName.OUTSTANDING)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("queue", "overrides", "words"),
    [
        (QueueName.CALLBACKS, {}, ["callbacks (tier 0)", "callback due 2026-06-08 14:30:00 UTC", "user 1000"]),
        (
            QueueName.UNSIGNED,
            {"attempts_total": 0},
            ["unsigned (tier 1)", "never contacted", "oldest active claim 2025-03-01"],
        ),
        (
            QueueName.OUTSTANDING,
            {"pending_requirements": 100},
            ["outstanding_requests (tier 2)", "2 attempt(s)", "63 pending"],
        ),
        (QueueName.UNSIGNED, {"oldest_active_claim_at": None}, ["oldest active claim unknown"]),
    ],
)
def test_explain_score_names_the_criteria_and_the_score(
    queue: QueueName, overrides: dict[str, Any], words: list[str]
) -> None:
    kwargs: dict[str, Any] = {
        "attempts_total": 2,
        "oldest_active_claim_at": CLAIM,
        "pending_requirements": 3,
        "user_id": 1000,
        "due_at": DUE if queue is QueueName.CALLBACKS else None,
    }
    kwargs.update(overrides)
    text = explain_score(queue, **kwargs)
    for word in words:
        assert word in text
    assert text.endswith(f"-> score {int(queue_score(queue, **kwargs))}")
