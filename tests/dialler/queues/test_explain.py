import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dialler.compliance.gate import ContactFacts, check
from dialler.compliance.gates import CallingRules, ContactHistory, GateResult
from dialler.queues.eligibility import CustomerFacts, QueueName, classify
from dialler.queues.explain import Explanation, explain
from dialler.queues.scoring import queue_score
from tests.support.queue_facts import eligible_customer

LONDON = ZoneInfo("Europe/London")
RULES = CallingRules()


def uk(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LONDON).astimezone(UTC)


def facts(**overrides: Any) -> CustomerFacts:
    return eligible_customer(**overrides)


def run(
    f: CustomerFacts,
    now: datetime,
    hist: ContactHistory | None = None,
    *,
    listed_dnc: bool = False,
    opted_out: bool = False,
    with_next: bool = True,
) -> Explanation:
    """The pipeline as the rebuild runs it: classify, gate, score, explain."""
    hist = hist or ContactHistory()
    placement = classify(f)
    decision = check(
        ContactFacts(
            user_id=f.user_id,
            phone_e164="+447700900123",
            postcode="SW1A 1AA",
            do_not_call=listed_dnc,
            opted_out=opted_out,
            attempts=hist.attempts,
            last_abandoned_at=hist.last_abandoned_at,
        ),
        channel="voice",
        at=now,
        rules=RULES,
    )
    results = decision.checks
    score = None
    if placement.queue is not None:
        score = queue_score(
            placement.queue,
            attempts_total=len(hist.attempts),
            oldest_active_claim_at=f.oldest_active_claim_at,
            pending_requirements=f.pending_requirements,
            user_id=f.user_id,
        )
    nxt = decision.next_allowed_at if with_next else None
    return explain(f, placement, results, score, next_allowed_at=nxt)


def test_queued_and_callable_now() -> None:
    e = run(facts(), uk(2026, 6, 8, 12))
    assert e.queue is QueueName.UNSIGNED
    assert e.score is not None and e.score > 0
    assert e.callable_now
    assert e.blocking_rule is None
    assert e.until is None
    assert e.reasons[0].startswith("unsigned: ")
    assert "score" in e.reasons[1]
    assert e.summary == f"user 7: in unsigned at score {e.score:.0f}, callable now"


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"status": "deceased"}, "deceased"),
        ({"deleted": True}, "deleted"),
        ({"active_claims": 0}, "no_active_claim"),
        ({"signed": True}, "nothing_to_chase"),
        ({"phone_raw": "+33 6 12 34 56 78"}, "invalid_phone:not_uk"),
    ],
)
def test_not_queued_says_why_and_never_until_when(overrides: dict[str, Any], rule: str) -> None:
    e = run(facts(**overrides), uk(2026, 6, 14, 12))  # a Sunday: the gates must not mask the reason
    assert e.queue is None
    assert e.score is None
    assert not e.callable_now
    assert e.blocking_rule == rule
    assert e.until is None
    assert len(e.reasons) == 1 and e.reasons[0].startswith(f"{rule}: ")
    assert e.summary == f"user 7: not queued ({rule})"


@pytest.mark.parametrize(
    ("now", "hist", "listed_dnc", "opted_out", "rule", "until"),
    [
        (uk(2026, 6, 14, 12), None, False, False, "calling_window", uk(2026, 6, 15, 8)),
        (uk(2026, 12, 25, 12), None, False, False, "calling_window", uk(2026, 12, 29, 8)),
        (uk(2026, 6, 8, 12), None, True, False, "do_not_call", None),
        (uk(2026, 6, 8, 12), None, False, True, "opted_out", None),
        # both a gap and the window hold it: the longest-holding gate is named, with the joint time
        (
            uk(2026, 6, 13, 17, 30),
            ContactHistory((uk(2026, 6, 13, 16),)),
            False,
            False,
            "calling_window",
            uk(2026, 6, 15, 8),
        ),
        (
            uk(2026, 6, 8, 12),
            ContactHistory((uk(2026, 6, 8, 11),)),
            False,
            False,
            "min_gap",
            uk(2026, 6, 8, 15),
        ),
        # the gap ends after closing: named min_gap, but until is the next morning
        (
            uk(2026, 6, 8, 17),
            ContactHistory((uk(2026, 6, 8, 16, 30),)),
            False,
            False,
            "min_gap",
            uk(2026, 6, 9, 8),
        ),
        (
            uk(2026, 6, 8, 12),
            ContactHistory((uk(2026, 6, 8, 9),), last_abandoned_at=uk(2026, 6, 8, 9)),
            False,
            False,
            "abandoned_cooloff",
            uk(2026, 6, 11, 9),
        ),
    ],
)
def test_queued_but_blocked_says_which_rule_and_until_when(
    now: datetime,
    hist: ContactHistory | None,
    listed_dnc: bool,
    opted_out: bool,
    rule: str,
    until: datetime | None,
) -> None:
    e = run(facts(), now, hist, listed_dnc=listed_dnc, opted_out=opted_out)
    assert e.queue is QueueName.UNSIGNED
    assert not e.callable_now
    assert e.blocking_rule == rule
    assert e.until == until
    assert any(r.startswith(f"{rule}: ") for r in e.reasons)
    assert f"blocked by {rule}" in e.summary


def test_without_next_allowed_at_until_is_the_latest_gate_until() -> None:
    e = run(facts(), uk(2026, 6, 8, 17), ContactHistory((uk(2026, 6, 8, 16, 30),)), with_next=False)
    assert e.blocking_rule == "min_gap"
    assert e.until == uk(2026, 6, 8, 20, 30)


def test_vulnerable_customers_are_flagged_in_the_explanation() -> None:
    e = run(facts(status="vulnerable"), uk(2026, 6, 8, 12))
    assert e.vulnerable
    assert any("vulnerable" in r for r in e.reasons)
    assert not run(facts(), uk(2026, 6, 8, 12)).vulnerable


def test_callback_explanation() -> None:
    f = facts(has_live_callback_due=True)
    placement = classify(f)
    score = queue_score(
        placement.queue or QueueName.CALLBACKS,
        attempts_total=0,
        oldest_active_claim_at=f.oldest_active_claim_at,
        pending_requirements=0,
        user_id=f.user_id,
        due_at=uk(2026, 6, 8, 14, 30),
    )
    open_gate = GateResult(True, "calling_window", "open")
    e = explain(f, placement, [open_gate], score)
    assert (e.queue, e.callable_now, e.score) == (QueueName.CALLBACKS, True, score)
    assert e.reasons[0] == "callback_due: a booked callback is due"


def test_explanations_never_carry_the_phone_number() -> None:
    e = run(facts(phone_raw="07700 900123"), uk(2026, 6, 8, 12), listed_dnc=True)
    text = " ".join([*e.reasons, e.summary])
    assert "900123" not in text
    assert "phone" not in {f.name for f in dataclasses.fields(e)}


def test_explanation_is_immutable() -> None:
    e = run(facts(), uk(2026, 6, 8, 12))
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.queue = None  # type: ignore[misc]


def test_until_is_utc() -> None:
    e = run(facts(), uk(2026, 6, 14, 12))
    assert e.until is not None and e.until.utcoffset() == timedelta(0)
