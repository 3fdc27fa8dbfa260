"""The callback part of the placement rule: a booked callback holds the customer out of every queue
until it is prepared (inside the prepare window), then sits in the callbacks queue not callable
before its due time and reserved for its owner until due + grace; the Redis engine enforces both
without anyone acting at the deadline."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from dialler.compliance.gates import CallingRules
from dialler.config import Settings
from dialler.queues.eligibility import CustomerFacts
from dialler.queues.engine import QueueEngine
from dialler.queues.facts import DiallerFacts, LiveCallback
from dialler.queues.placement import CALLBACK_PREPARE, CLOCK_ALLOWANCE, Decision, decide
from tests.support.queue_facts import eligible_customer
from tests.support.redis import REDIS_URL, unlink_prefix

NOW = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # a Wednesday, 11:00 in London
GRACE = timedelta(seconds=600)
PREPARE = timedelta(seconds=300)
OWNER, OTHER = 1, 2
USER = 7


def customer(**overrides: Any) -> CustomerFacts:
    return eligible_customer(**{"user_id": USER, **overrides})


def with_callback(due_at: datetime, status: str = "scheduled", owner: int | None = OWNER, **known: Any) -> DiallerFacts:
    return DiallerFacts(callbacks={USER: LiveCallback(USER, due_at, status, owner)}, **known)


def place(known: DiallerFacts, now: datetime = NOW, facts: CustomerFacts | None = None) -> Decision:
    return decide(
        facts or customer(), known, now=now, rules=CallingRules(), callback_grace=GRACE, callback_prepare=PREPARE
    )


def test_the_default_window_is_the_setting_default() -> None:
    assert timedelta(seconds=Settings.model_fields["callback_prepare_s"].default) == CALLBACK_PREPARE


def test_a_callback_outside_the_prepare_window_holds_the_customer_out_of_every_queue() -> None:
    due = NOW + PREPARE + CLOCK_ALLOWANCE + timedelta(seconds=1)
    decision = place(with_callback(due))
    assert decision.entry is None
    assert decision.reason == "callback_booked"
    assert decision.blocked_by is not None and decision.blocked_by.until == due


def test_just_inside_the_window_the_customer_waits_in_the_callbacks_queue_until_due() -> None:
    due = NOW + PREPARE + CLOCK_ALLOWANCE
    decision = place(with_callback(due))
    entry = decision.entry
    assert entry is not None and entry.queue == "callbacks"
    assert decision.reason == "callback_due"
    assert entry.not_before == due.timestamp()  # not callable before the booked second
    assert entry.reserved_for_agent == OWNER
    assert entry.reserved_until == (due + GRACE).timestamp()
    assert decision.blocked_by is not None and decision.blocked_by.rule == "callback_booked"


def test_the_window_is_the_setting_callers_pass() -> None:
    due = NOW + timedelta(seconds=120)
    wide = decide(customer(), with_callback(due), now=NOW, rules=CallingRules(), callback_grace=GRACE)
    narrow = decide(
        customer(),
        with_callback(due),
        now=NOW,
        rules=CallingRules(),
        callback_grace=GRACE,
        callback_prepare=timedelta(seconds=0),
    )
    assert wide.entry is not None and wide.entry.queue == "callbacks"
    assert narrow.entry is None and narrow.reason == "callback_booked"


def test_prepared_and_due_place_the_customer_the_same_way_once_due() -> None:
    due = NOW - timedelta(seconds=5)  # the workflow's 'due' bookkeeping has not landed yet
    prepared, recorded_due = place(with_callback(due)), place(with_callback(due, status="due"))
    assert prepared.entry == recorded_due.entry
    assert prepared.entry is not None and prepared.entry.not_before is None
    assert prepared.entry.reserved_for_agent == OWNER


def test_open_is_callable_by_anyone_and_ordered_by_due_time() -> None:
    due = NOW - GRACE - timedelta(seconds=1)
    entry = place(with_callback(due, status="open")).entry
    assert entry is not None and entry.queue == "callbacks"
    assert entry.not_before is None and entry.reserved_for_agent is None
    earlier = place(with_callback(due - timedelta(minutes=5), status="open")).entry
    assert earlier is not None and earlier.score < entry.score


def test_no_owner_means_no_reservation() -> None:
    entry = place(with_callback(NOW + timedelta(seconds=60), owner=None)).entry
    assert entry is not None and entry.reserved_for_agent is None and entry.reserved_until is None


def test_attempt_limits_give_way_to_a_prepared_callback_but_not_an_opt_out() -> None:
    due = NOW + timedelta(seconds=60)
    recent = tuple(NOW - timedelta(minutes=m) for m in (30, 60, 90))  # three today: the daily limit
    limited = place(with_callback(due, attempts={USER: recent}, attempts_total={USER: 3}))
    assert limited.entry is not None and limited.entry.not_before == due.timestamp()
    opted = place(with_callback(due, opted_out=frozenset({"+447700900123"})))
    assert opted.entry is None and opted.reason == "opted_out"


def test_an_abandoned_call_cool_off_outlasts_the_booked_time() -> None:
    due = NOW + timedelta(seconds=60)
    abandoned = NOW - timedelta(hours=1)
    decision = place(with_callback(due, abandoned_at={"+447700900123": abandoned}))
    assert decision.entry is not None and decision.entry.not_before is not None
    assert decision.entry.not_before > due.timestamp()
    assert decision.blocked_by is not None and decision.blocked_by.rule != "callback_booked"


def test_a_deceased_customer_is_never_prepared() -> None:
    decision = place(with_callback(NOW + timedelta(seconds=60)), facts=customer(status="deceased"))
    assert decision.entry is None and decision.reason == "deceased"


# --------------------------------------------------------------------------- the engine enforces it


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[QueueEngine]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"test-placement-{uuid.uuid4().hex[:12]}"
    yield QueueEngine(client, prefix=prefix, lease_ttl_s=30)
    await unlink_prefix(client, prefix)
    await client.aclose()


async def offer(engine: QueueEngine, agent: int, at: datetime) -> int | None:
    lease = await engine.next_call(agent_id=agent, queues=["callbacks"], trained_vulnerable=True, now=at.timestamp())
    if lease is None:
        return None
    await engine.release(user_id=lease.user_id, token=lease.token, requeue=None, now=at.timestamp())
    return lease.user_id


@pytest.mark.parametrize(
    ("agent", "seconds_after_due", "offered"),
    [
        (OWNER, -1, False),  # nobody before the booked time, not even the owner
        (OWNER, 0, True),  # the owner from the due second
        (OTHER, 0, False),  # nobody else during the grace period
        (OTHER, GRACE.total_seconds() - 1, False),
        (OTHER, GRACE.total_seconds() + 1, True),  # anyone after it, with no requeue at the deadline
        (OWNER, GRACE.total_seconds() + 1, True),
    ],
)
async def test_a_prepared_entry_is_offered_by_the_engine_at_the_right_time_to_the_right_agent(
    engine: QueueEngine, agent: int, seconds_after_due: float, offered: bool
) -> None:
    due = NOW + PREPARE
    entry = place(with_callback(due)).entry
    assert entry is not None
    await engine.upsert(entry)
    got = await offer(engine, agent, due + timedelta(seconds=seconds_after_due))
    assert got == (USER if offered else None)
