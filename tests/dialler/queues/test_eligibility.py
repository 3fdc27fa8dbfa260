import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from dialler.compliance.gates import CALLABLE_USER_STATUSES, agent_may_take
from dialler.queues.eligibility import (
    ACTIVE_CLAIM_STATUSES,
    QUEUE_PRIORITY,
    REASONS,
    CustomerFacts,
    Placement,
    QueueName,
    classify,
    reason_text,
)
from dialler.queues.phones import PHONE_REASONS
from tests.support.queue_facts import eligible_customer

OLDEST = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)


def facts(**overrides: Any) -> CustomerFacts:
    """An unsigned, active customer with one active claim and a good phone, unless overridden."""
    return eligible_customer(**{"user_id": 42, "oldest_active_claim_at": OLDEST, **overrides})


def test_queue_names_and_priority_are_the_redis_contract() -> None:
    assert [q.value for q in QUEUE_PRIORITY] == ["callbacks", "unsigned", "outstanding_requests"]
    assert set(QUEUE_PRIORITY) == set(QueueName)
    assert ACTIVE_CLAIM_STATUSES == ("new", "documents_required", "in_progress", "submitted_to_lender")
    assert CALLABLE_USER_STATUSES == ("active", "vulnerable")


@pytest.mark.parametrize(
    ("overrides", "queue", "reason"),
    [
        ({}, QueueName.UNSIGNED, "unsigned"),
        ({"pending_requirements": 2}, QueueName.UNSIGNED, "unsigned"),  # unsigned beats outstanding
        ({"signed": True, "pending_requirements": 1}, QueueName.OUTSTANDING, "outstanding_requirements"),
        ({"has_live_callback_due": True}, QueueName.CALLBACKS, "callback_due"),  # callbacks beat unsigned
        (
            {"has_live_callback_due": True, "signed": True, "pending_requirements": 3},
            QueueName.CALLBACKS,
            "callback_due",
        ),
        ({"has_live_callback_due": True, "signed": True}, QueueName.CALLBACKS, "callback_due"),
        ({"status": "vulnerable"}, QueueName.UNSIGNED, "unsigned"),
        ({"status": "Active"}, QueueName.UNSIGNED, "unsigned"),  # case-insensitive replica collation
        ({"status": " active "}, QueueName.UNSIGNED, "unsigned"),
        ({"active_claims": 4}, QueueName.UNSIGNED, "unsigned"),
    ],
)
def test_queued(overrides: dict[str, Any], queue: QueueName, reason: str) -> None:
    placement = classify(facts(**overrides))
    assert placement.queue is queue
    assert placement.reason == reason
    assert placement.queued
    assert placement.phone_e164 == "+447700900123"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"status": "deceased"}, "deceased"),
        ({"status": "DECEASED"}, "deceased"),
        # deceased wins over everything, even a callback the customer booked before
        ({"status": "deceased", "has_live_callback_due": True}, "deceased"),
        ({"status": "deceased", "deleted": True, "is_enabled": False}, "deceased"),
        ({"deleted": True}, "deleted"),  # soft-deleted customer
        ({"deleted": True, "is_enabled": False}, "deleted"),
        ({"is_enabled": False}, "disabled"),
        ({"is_enabled": False, "has_live_callback_due": True}, "disabled"),
        ({"status": "inactive"}, "inactive"),
        ({"status": "suspended"}, "unknown_status"),
        ({"status": ""}, "unknown_status"),
        # all claims closed or soft-deleted: the facts count only active, not-deleted claims
        ({"active_claims": 0, "oldest_active_claim_at": None}, "no_active_claim"),
        ({"active_claims": 0, "pending_requirements": 2, "signed": True}, "no_active_claim"),
        ({"active_claims": 0, "has_live_callback_due": True}, "no_active_claim"),
        # signed, and every requirement completed / soft-deleted / on a closed claim: counted as 0
        ({"signed": True, "pending_requirements": 0}, "nothing_to_chase"),
        # phone problems are reported only when there is something to call about
        ({"phone_raw": None}, "invalid_phone:missing"),
        ({"phone_raw": "not a number"}, "invalid_phone:unparseable"),
        ({"phone_raw": "123"}, "invalid_phone:too_short"),
        ({"phone_raw": "+33 6 12 34 56 78"}, "invalid_phone:not_uk"),
        ({"phone_raw": "0800 123 4567"}, "invalid_phone:unsupported_type"),
        ({"phone_raw": None, "has_live_callback_due": True}, "invalid_phone:missing"),
        ({"phone_raw": None, "signed": True, "pending_requirements": 0}, "nothing_to_chase"),
        ({"phone_raw": None, "active_claims": 0}, "no_active_claim"),
    ],
)
def test_not_queued_with_a_stable_reason(overrides: dict[str, Any], reason: str) -> None:
    placement = classify(facts(**overrides))
    assert placement.queue is None
    assert not placement.queued
    assert placement.reason == reason
    assert placement.reason_text and placement.reason_text != reason


def test_vulnerable_flag_follows_status_even_when_not_queued() -> None:
    assert classify(facts(status="vulnerable")).vulnerable
    assert classify(facts(status="Vulnerable", active_claims=0)).vulnerable
    assert not classify(facts(status="active")).vulnerable


def test_phone_is_reported_even_when_not_queued() -> None:
    assert classify(facts(status="deceased")).phone_e164 == "+447700900123"
    assert classify(facts(phone_raw="abc")).phone_e164 is None


def test_every_reason_code_has_text() -> None:
    for code, text in REASONS.items():
        assert reason_text(code) == text
    for code, text in PHONE_REASONS.items():
        assert reason_text(f"invalid_phone:{code}") == f"no callable phone number: {text}"
    assert reason_text("some_future_code") == "some_future_code"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"active_claims": -1}, "negative"),
        ({"pending_requirements": -1}, "negative"),
        ({"oldest_active_claim_at": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_facts_reject_impossible_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        facts(**overrides)


def test_placement_is_immutable() -> None:
    placement = classify(facts())
    assert isinstance(placement, Placement)
    with pytest.raises(dataclasses.FrozenInstanceError):
        placement.queue = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("vulnerable", "trained", "allowed"),
    [
        (False, False, True),
        (False, True, True),
        (True, True, True),
        (True, False, False),  # vulnerable customer, untrained agent
    ],
)
def test_agent_may_take(vulnerable: bool, trained: bool, allowed: bool) -> None:
    assert agent_may_take(vulnerable, trained) is allowed
